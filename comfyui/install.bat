@echo off
rem Install siso-lab for the SISO ComfyUI nodes (Windows). Runs install.py with ComfyUI's Python:
rem %PYTHON% if set (portable build: set PYTHON=..\..\..\python_embeded\python.exe), else "python" on PATH.
rem
rem   install.bat                 into ComfyUI's Python. pip's plan is checked first: if it would change a
rem                               package that is already installed, nothing is installed, the changes are
rem                               listed and the --venv command is printed (--allow-changes goes ahead).
rem                               torch, torchvision and torchaudio are never changed.
rem   install.bat --venv DIR      a SEPARATE environment for SISO in DIR; the node uses it whenever its
rem                               python_executable is empty. Add --torch-index-url URL for a CUDA build.
rem   install.bat --dry-run       only list what would be installed or changed.
setlocal
if "%PYTHON%"=="" set "PYTHON=python"
"%PYTHON%" "%~dp0install.py" %*
exit /b %ERRORLEVEL%
