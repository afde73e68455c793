#!/usr/bin/env bash
# Create the virtual environment of one peer: benchmarks/peers/setup.sh <modelopt|nncf|aimet>
# torch==2.13.0 is installed first, then the peer with constraints.txt pinning torch==2.13.0, so
# the peer cannot swap torch. The venv sees the system site-packages (mpsearch, scikit-learn) so the
# peer script can load the demo models; the peer's own packages stay inside the venv.
# Environments live in $PEER_VENVS (default /work/venvs/<peer>); a log is kept in <venv>/install.log.
set -euo pipefail
peer="${1:?usage: setup.sh <modelopt|nncf|aimet>}"
here="$(cd "$(dirname "$0")" && pwd)"
case "$peer" in
  modelopt) spec="nvidia-modelopt[torch]" ;;
  nncf) spec="nncf==2.19.*" ;;
  aimet) spec="aimet-torch" ;;
  *) echo "setup.sh: peer must be one of modelopt, nncf, aimet, but got '$peer'" >&2; exit 2 ;;
esac
venv="${PEER_VENVS:-/work/venvs}/$peer"
python3 -m venv --system-site-packages "$venv"
log="$venv/install.log"
{
  "$venv/bin/python" -m pip install "torch==2.13.0"
  "$venv/bin/python" -m pip install -c "$here/constraints.txt" "$spec"
  "$venv/bin/python" -c "import torch; assert torch.__version__.startswith('2.13.0'), torch.__version__; print('torch', torch.__version__)"
} 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
echo "$status" > "$venv/install.status"
exit "$status"
