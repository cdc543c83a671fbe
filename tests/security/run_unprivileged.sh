#!/usr/bin/env bash
# Run the hostile-code corpus as an unprivileged user (run this script as root).
#
#   bash tests/security/run_unprivileged.sh [extra pytest args]
#
# What it does, and why:
# - creates the user $LLMEXEC_TEST_USER (default llmexec-ci) if missing: no home, no login;
# - the interpreter is pyenv's under /root, and /root is 0700 here: it grants *traversal only*
#   (o+x, no listing) on /root and on each parent of the interpreter that lacks it, and
#   restores the original modes on exit (set LLMEXEC_KEEP_TRAVERSABLE=1 to keep them, e.g.
#   so that root's own runs can use per-job uids too); it never makes anything readable that
#   was not already;
# - runs pytest with the same interpreter and the editable install (the repo must be
#   world-readable), without bytecode or cache writes into the repo.
# Override the interpreter with PYTHON=/path/to/python3.11 (the real binary, not a shim).
set -euo pipefail

if [[ $(id -u) -ne 0 ]]; then
    echo "run_unprivileged.sh: run me as root (I create a user and switch to it)" >&2
    exit 2
fi

USER_NAME=${LLMEXEC_TEST_USER:-llmexec-ci}
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
PY=${PYTHON:-$(python3 -c 'import os, sys; print(os.path.realpath(sys.executable))')}
if [[ $(head -c 4 "$PY" | od -An -c | tr -d ' ') != '177ELF' ]]; then
    echo "run_unprivileged.sh: $PY is not an ELF interpreter (a pyenv shim?); set PYTHON" >&2
    exit 2
fi

if ! id -u "$USER_NAME" >/dev/null 2>&1; then
    useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin \
        "$USER_NAME"
fi

# Grant o+x on every ancestor of the interpreter prefix and the repo that lacks it.
declare -A ORIGINAL_MODES=()
grant_traverse() {
    # Top-down, so each check runs with the parents already traversable.
    local path=$1 ancestors=()
    while [[ $path != "/" && -n $path ]]; do
        ancestors=("$path" "${ancestors[@]}")
        path=$(dirname "$path")
    done
    for dir in "${ancestors[@]}"; do
        if ! runuser -u "$USER_NAME" -- test -x "$dir" 2>/dev/null; then
            ORIGINAL_MODES[$dir]=$(stat -c '%a' "$dir")
            chmod o+x "$dir"
        fi
    done
}
restore_modes() {
    if [[ ${LLMEXEC_KEEP_TRAVERSABLE:-0} == 1 ]]; then
        return
    fi
    for dir in "${!ORIGINAL_MODES[@]}"; do
        chmod "${ORIGINAL_MODES[$dir]}" "$dir"
    done
}
trap restore_modes EXIT

PREFIX=$("$PY" -c 'import sys; print(sys.base_prefix)')
grant_traverse "$PREFIX"
grant_traverse "$REPO"
for dir in "${!ORIGINAL_MODES[@]}"; do
    echo "run_unprivileged.sh: temporarily granted o+x on $dir (was ${ORIGINAL_MODES[$dir]})"
done

RUN=(runuser -u "$USER_NAME" -- env -i PATH=/usr/bin:/bin HOME=/tmp LANG=C.UTF-8
     PYTHONDONTWRITEBYTECODE=1)
if ! (cd "$REPO" && "${RUN[@]}" "$PY" -c \
        'import executor_worker.sandbox, pytest, pytest_asyncio, pyseccomp'); then
    echo "run_unprivileged.sh: $USER_NAME cannot import the project with $PY" >&2
    exit 1
fi

cd "$REPO"
"${RUN[@]}" "$PY" -c '
import asyncio, tempfile
from executor_worker.sandbox import SandboxSettings, build_sandbox
async def main():
    with tempfile.TemporaryDirectory() as work:
        box = build_sandbox(SandboxSettings(work_dir=work, allow_degraded=True))
        await box.start()
        print("run_unprivileged.sh: layers:", ", ".join(box.layers()))
        await box.close()
asyncio.run(main())' 2>/dev/null || true
echo "run_unprivileged.sh: running the security corpus as $USER_NAME ($(id -u "$USER_NAME"))"
"${RUN[@]}" "$PY" -m pytest tests/security -m security -q -p no:cacheprovider "$@"
