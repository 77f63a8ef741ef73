#!/usr/bin/env bash
# The GPU check of issue 22: the CUDA paths no CPU run reaches, in at most 10 minutes on one GPU.
#
#   bash benchmarks/gpu_check.sh            # on a machine with a CUDA GPU, from the repository root
#   bash benchmarks/gpu_check.sh --dry-run  # anywhere: checks every command and flag it uses, runs nothing heavy
#
# Steps (each under its own `timeout`; their budgets add up to 570 s):
#   1. environment      nvidia-smi, torch's CUDA build and device                                   20 s
#   2. cuda tests       pytest -m cuda tests/test_cuda.py: every variant on CUDA vs itself on CPU,     90 s
#                       flash/efficient SDPA vs math, alibi/relative on a fused kernel, allocator peak
#   3. bench sdpa       attnbench bench on cuda, bfloat16: sdpa (auto), sdpa-flash, sdpa-efficient,    120 s
#                       alibi, relative at 1k, 4k, 16k, with the allocator's peak-memory column
#   4. bench flex       compiled FlexAttention (tests/plugin_packages/attnbench-flexmods' softcap,      150 s
#                       option backend=compiled) beside sdpa at 1k, 4k, 16k
#   5. quick matrix     attnbench run --profile quick on cuda: listops, image-classification ×         170 s
#                       sdpa, sdpa-flash, linear, local, then attnbench report
#   6. summary          summary.md: each step's exit status and seconds                                 —
#
# Everything is written under one folder: $OUT when set (the device runner's), else $TMPDIR/attnbench-gpu-check-<UTC time>.
# Exit status: 0 every step passed, 1 some step failed or timed out (summary.md says which), 2 usage,
# 3 no CUDA device (nothing measured). Override the interpreter with PYTHON=..., the CLI with ATTNBENCH=....
set -uo pipefail

DRY=0
case "${1:-}" in
  --dry-run) DRY=1 ;;
  "") ;;
  *) echo "gpu_check.sh: unknown argument '$1'; use --dry-run or nothing" >&2; exit 2 ;;
esac

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT" || exit 2
PY=${PYTHON:-$ROOT/.venv/bin/python}
AB=${ATTNBENCH:-$ROOT/.venv/bin/attnbench}
[[ -x "$PY" ]] || PY=$(command -v python3)
[[ -x "$AB" ]] || AB=$(command -v attnbench || true)
DEST=${OUT:-${TMPDIR:-/tmp}/attnbench-gpu-check-$(date -u +%Y%m%dT%H%M%SZ)}
mkdir -p "$DEST"
SUMMARY=$DEST/summary.md
FAILED=0
LENGTHS=1k,4k,16k
TASKS=listops,image-classification

printf '# GPU check (benchmarks/gpu_check.sh)\n\n- started %s UTC on %s\n\n| step | exit | seconds | output |\n| --- | ---: | ---: | --- |\n' \
  "$(date -u '+%F %T')" "$(hostname)" > "$SUMMARY"

# step NAME BUDGET_SECONDS COMMAND...: run it under timeout, output to NAME.log, a row in summary.md.
step() {
  local name=$1 budget=$2; shift 2
  echo "== $name (at most ${budget} s): $*"
  if (( DRY )); then
    printf '| %s | dry-run | — | `%s` |\n' "$name" "$*" >> "$SUMMARY"
    return 0
  fi
  local start=$SECONDS rc
  timeout --kill-after=10 "$budget" "$@" > "$DEST/$name.log" 2>&1
  rc=$?
  (( rc == 124 || rc == 137 )) && echo "   timed out after ${budget} s" | tee -a "$DEST/$name.log"
  (( rc != 0 )) && FAILED=1
  printf '| %s | %s | %s | %s.log |\n' "$name" "$rc" "$((SECONDS - start))" "$name" >> "$SUMMARY"
  tail -n 3 "$DEST/$name.log"
}

# In a dry run: every flag this script passes must appear in the command's --help, the CUDA tests must collect.
check_flags() {
  local cmd=$1; shift
  local help missing=()
  help=$("$AB" "$cmd" --help 2>&1) || { echo "attnbench $cmd --help failed" >&2; return 1; }
  for flag in "$@"; do grep -q -- "$flag" <<< "$help" || missing+=("$flag"); done
  if (( ${#missing[@]} )); then echo "attnbench $cmd lacks ${missing[*]}" >&2; return 1; fi
  echo "attnbench $cmd: every flag used here exists (${*})"
}

if (( DRY )); then
  [[ -n "$AB" ]] || { echo "no attnbench CLI found; set ATTNBENCH=..." >&2; exit 2; }
  check_flags bench --device --dtype --variants --lengths --repeats --time-budget --timeout --option --out --name \
    --no-backward --memory-limit || exit 1
  check_flags run --device --profile --tasks --variants --store --timeout || exit 1
  check_flags report --store --profile --out || exit 1
  "$PY" -m pytest tests/test_cuda.py -m cuda --collect-only -q > "$DEST/collect.log" 2>&1 \
    || { echo "tests/test_cuda.py does not collect: see $DEST/collect.log" >&2; exit 1; }
  echo "tests/test_cuda.py collects: $(grep -c '::' "$DEST/collect.log") tests"
  grep -q '"softcap"' tests/plugin_packages/attnbench-flexmods/attnbench_flexmods/mods.py \
    || { echo "tests/plugin_packages/attnbench-flexmods no longer registers 'softcap'" >&2; exit 1; }
  listed=$("$AB" list attention 2>&1; "$AB" list tasks 2>&1)
  for name in sdpa sdpa-flash sdpa-efficient alibi relative linear local ${TASKS//,/ }; do
    grep -q -- " $name " <<< "$listed" || { echo "attnbench list does not show '$name'" >&2; exit 1; }
  done
  echo "every variant and task named here is registered"
else
  if ! "$PY" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)'; then
    echo "gpu_check.sh: torch sees no CUDA device here; nothing measured (use --dry-run on a CPU machine)" | tee -a "$SUMMARY"
    exit 3
  fi
fi

step environment 20 bash -c "nvidia-smi; '$PY' -c 'import torch; print(torch.__version__, torch.version.cuda, \
torch.cuda.get_device_name(0), torch.cuda.get_device_properties(0).total_memory // 2**20, \"MiB\")'"

step cuda-tests 90 "$PY" -m pytest tests/test_cuda.py -m cuda -q -rs -p no:cacheprovider

step bench-sdpa 120 "$AB" bench --device cuda --dtype bfloat16 --variants sdpa-flash,sdpa-efficient,alibi,relative \
  --lengths "$LENGTHS" --repeats 5 --time-budget 2 --timeout 60 --memory-limit none --out "$DEST" --name cuda-sdpa-bf16

# The flex plugin is a test package of this repository; installed without dependencies into this interpreter.
step bench-flex 150 bash -c "'$PY' -m pip install -q --no-deps -e tests/plugin_packages/attnbench-flexmods && \
'$AB' bench --device cuda --dtype bfloat16 --variants softcap --option backend=compiled --lengths $LENGTHS \
--repeats 5 --time-budget 2 --timeout 120 --no-backward --memory-limit none --out '$DEST' --name cuda-flex-compiled"

step quick-matrix 170 bash -c "'$AB' run --device cuda --profile quick --tasks $TASKS \
--variants sdpa,sdpa-flash,linear,local --store '$DEST/quick.sqlite' --timeout 60 && \
'$AB' report --store '$DEST/quick.sqlite' --profile quick --out '$DEST/quick-report'"

printf '\n- finished %s UTC; output in %s\n' "$(date -u '+%F %T')" "$DEST" >> "$SUMMARY"
cat "$SUMMARY"
(( DRY )) && { echo "dry run: every step checked, nothing run on a GPU"; exit 0; }
exit $FAILED
