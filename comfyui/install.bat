@echo off
rem Install what SISO needs for the ComfyUI node pack (Windows).
rem   install.bat                 into ComfyUI's Python: %PYTHON% if set, else "python" on PATH
rem                               (for the portable build: set PYTHON=..\..\..\python_embeded\python.exe).
rem                               The installed torch / torchvision / torchaudio are pinned, so they stay.
rem   install.bat --venv DIR      a SEPARATE environment for SISO in DIR; then set the node's
rem                               python_executable to DIR\Scripts\python.exe
setlocal
set "HERE=%~dp0"
if "%PYTHON%"=="" set "PYTHON=python"

if /I "%~1"=="--venv" goto venv

set "PINS=%TEMP%\siso_torch_pins_%RANDOM%.txt"
"%PYTHON%" -c "import importlib.metadata as m, sys; pins=[f'{n}=={m.version(n)}' for n in ('torch','torchvision','torchaudio') if __import__('importlib.util').util.find_spec(n)]; open(sys.argv[1],'w').write('\n'.join(pins)+'\n'); print('keeping', ', '.join(pins))" "%PINS%"
if errorlevel 1 goto fail
"%PYTHON%" -m pip install -r "%HERE%requirements.txt" -c "%PINS%"
set "RC=%ERRORLEVEL%"
del "%PINS%" >nul 2>&1
if not "%RC%"=="0" goto fail
echo Done. Restart ComfyUI. (Download ir_features.pth by hand: see README.md.)
exit /b 0

:venv
if "%~2"=="" (
  echo install.bat: --venv needs a folder
  exit /b 2
)
"%PYTHON%" -m venv "%~2"
if errorlevel 1 goto fail
"%~2\Scripts\python.exe" -m pip install --upgrade pip
"%~2\Scripts\python.exe" -m pip install torch torchvision
if exist "%HERE%..\siso_lib\generate.py" (
  "%~2\Scripts\python.exe" -m pip install -e "%HERE%.."
) else (
  "%~2\Scripts\python.exe" -m pip install -r "%HERE%requirements.txt"
)
if errorlevel 1 goto fail
echo.
echo SISO environment ready. In the SISO LoRA Generator node set python_executable to:
echo   %~f2\Scripts\python.exe
exit /b 0

:fail
echo install.bat failed
exit /b 1
