@echo off
rem One entry point: build.cmd [build|test|demo|bench ARGS|run ARGS|clean]
setlocal
cd /d "%~dp0"
set DOTNET_CLI_TELEMETRY_OPTOUT=1
set DOTNET_NOLOGO=1
if "%CONFIGURATION%"=="" set CONFIGURATION=Release
set COMMAND=%1
if "%COMMAND%"=="" set COMMAND=build
if not "%1"=="" shift

where dotnet >nul 2>nul || (echo build.cmd: the .NET SDK ^(dotnet^) is not on PATH; install .NET 10 SDK first. 1>&2 & exit /b 1)

set REST=
:collect
if "%~1"=="" goto dispatch
set REST=%REST% %1
shift
goto collect

:dispatch
if /i "%COMMAND%"=="build" goto build
if /i "%COMMAND%"=="test" goto test
if /i "%COMMAND%"=="demo" goto demo
if /i "%COMMAND%"=="bench" goto bench
if /i "%COMMAND%"=="run" goto run
if /i "%COMMAND%"=="clean" goto clean
echo usage: build.cmd [build^|test^|demo^|bench ARGS^|run ARGS^|clean] 1>&2
exit /b 2

:build
dotnet build TaskVectors.slnx -c %CONFIGURATION% -nologo -v:minimal %REST%
exit /b %ERRORLEVEL%

:test
dotnet build TaskVectors.slnx -c %CONFIGURATION% -nologo -v:minimal || exit /b 1
dotnet test test\Microsoft.ML.TaskVectors.Tests -c %CONFIGURATION% --no-build -nologo %REST%
exit /b %ERRORLEVEL%

:demo
dotnet build TaskVectors.slnx -c %CONFIGURATION% -nologo -v:minimal || exit /b 1
dotnet src\Cli\bin\%CONFIGURATION%\net10.0\taskvectors.dll demo %REST%
exit /b %ERRORLEVEL%

:bench
dotnet build TaskVectors.slnx -c %CONFIGURATION% -nologo -v:minimal || exit /b 1
dotnet src\Cli\bin\%CONFIGURATION%\net10.0\taskvectors.dll bench %REST%
exit /b %ERRORLEVEL%

:run
dotnet build TaskVectors.slnx -c %CONFIGURATION% -nologo -v:minimal || exit /b 1
dotnet src\Cli\bin\%CONFIGURATION%\net10.0\taskvectors.dll %REST%
exit /b %ERRORLEVEL%

:clean
dotnet clean TaskVectors.slnx -c %CONFIGURATION% -nologo -v:minimal
exit /b %ERRORLEVEL%
