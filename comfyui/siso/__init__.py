"""What the SISO nodes do, without ComfyUI: input checks, the child process, the judged result.

Kept apart from comfyui/nodes.py so that it runs, and is tested, in a plain Python. It reads its
defaults from comfyui/defaults.json and imports nothing from siso_lib: ComfyUI's Python need not
have siso-lab installed (the child process runs it, often in another environment).
"""
