# Sourced by the device scripts (gpu_check.sh, gpu_prior.sh) from the repository root: sets PY to
# the repository's .venv python if there is one (PY_SET=1 keeps a given PY), and on the device
# machine, whose python lacks RDKit, installs the wheels carried in .whl/ into /tmp/site.
PY=${PY:-python3}
[ -x .venv/bin/python ] && [ -z "${PY_SET:-}" ] && PY=.venv/bin/python
if [ -d .whl ] && ! $PY -c "import rdkit" 2>/dev/null; then
    $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
    export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
export PYTHONUNBUFFERED=1
