#!/usr/bin/env bash
# One entry point: ./build.sh [build|test|demo|bench ARGS...|clean]
set -euo pipefail
cd "$(dirname "$0")"

export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1 DOTNET_SKIP_FIRST_TIME_EXPERIENCE=1
configuration=${CONFIGURATION:-Release}
command=${1:-build}
[ $# -gt 0 ] && shift

if ! command -v dotnet >/dev/null 2>&1; then
  echo "build.sh: the .NET SDK (dotnet) is not on PATH; install .NET 10 SDK first." >&2
  exit 1
fi

build() {
  dotnet build TaskVectors.slnx -c "$configuration" -nologo -v:minimal "$@"
}

cli() {
  dotnet "src/Cli/bin/$configuration/net10.0/taskvectors.dll" "$@"
}

case "$command" in
  build)
    build "$@"
    ;;
  test)
    build
    results=$(mktemp -d)
    set +e
    dotnet test test/Microsoft.ML.TaskVectors.Tests -c "$configuration" --no-build -nologo \
      --logger "trx;LogFileName=results.trx" --results-directory "$results" "$@" | tee "$results/console.txt"
    status=${PIPESTATUS[0]}
    set -e
    # One plain summary line, whatever the runner printed.
    summary=$(grep -Eo 'Failed: +[0-9]+, Passed: +[0-9]+, Skipped: +[0-9]+' "$results/console.txt" | tail -1 || true)
    if [ -n "$summary" ]; then
      failed=$(echo "$summary" | sed -E 's/Failed: +([0-9]+).*/\1/')
      passed=$(echo "$summary" | sed -E 's/.*Passed: +([0-9]+).*/\1/')
      skipped=$(echo "$summary" | sed -E 's/.*Skipped: +([0-9]+).*/\1/')
      if [ "$status" -ne 0 ] && [ "$failed" -eq 0 ]; then
        echo "tests: the run aborted (exit $status) after $passed passed"
      else
        echo "tests: $passed passed, $failed failed, $skipped skipped"
      fi
    fi
    rm -rf "$results"
    exit "$status"
    ;;
  demo)
    build
    cli demo "$@"
    ;;
  bench)
    build
    cli bench "$@"
    ;;
  run)
    build
    cli "$@"
    ;;
  clean)
    dotnet clean TaskVectors.slnx -c "$configuration" -nologo -v:minimal
    ;;
  *)
    echo "usage: ./build.sh [build|test|demo|bench ARGS|run ARGS|clean]" >&2
    exit 2
    ;;
esac
