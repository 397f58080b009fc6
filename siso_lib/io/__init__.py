"""A run's files: the subject photo (images), the LoRA files (lora, kohya), the run folder's writer
(run_folder) and reader (run_record), atomic writes (atomic), loss plots (plots), model names and
folders (model_paths), the progress protocol (progress), and where shipped files and outputs are
(locations). Part of the core: nothing here imports an application.
"""
