#!/usr/bin/env bash
# Reruns the whole CPU-scale study (docs/cpu_study/report.md) from scratch with the library's own
# commands. Finished runs are skipped and half-finished ones resume, so rerunning after an
# interruption only does what is missing.
#
#   examples/cpu_study/run_study.sh [WORK_DIR]     (default /tmp/cpu_study)
#
# Environment: SHARDS (parallel sweep processes, default 2), MULTISCALE (the CLI, default
# `multiscale`), PYTHON (default python), DOCS (where the run table, summary and report plots go,
# default docs/cpu_study), NUTS_DRAWS (default 500), SKIP_LARGE_PSTAR=1 to leave out the run
# trained with p* from the largest-size fit, SKIP_MID=1 to leave out the cpu-400k runs.
set -euo pipefail

HERE="$(cd "$(dirname "$0")" && pwd)"
WORK="${1:-/tmp/cpu_study}"
SHARDS="${SHARDS:-2}"
MS="${MULTISCALE:-multiscale}"
PY="${PYTHON:-python}"
DOCS="${DOCS:-docs/cpu_study}"
DRAWS="${NUTS_DRAWS:-500}"
TOOLS="$PY $HERE/study_tools.py"
N_LARGE=803968   # cpu-800k non-embedding parameters (`multiscale presets`)
D_LARGE=198656   # 2e5 tokens rounded down to whole steps of 16 x 128 tokens
FIT_MAX_N=300000 # the law is fitted on cpu-100k and cpu-200k; cpu-400k and cpu-800k are held out
mkdir -p "$WORK" "$DOCS"
t0=$(date +%s)

sweep() {  # sweep PLAN: SHARDS processes in parallel, one log each
  local plan="$1" name pids=() rc=0
  name="$(basename "$plan" .yaml)"
  for ((i = 0; i < SHARDS; i++)); do
    $MS sweep "$plan" --out "$WORK/sweep" --corpus "$WORK/corpus" --shard "$i/$SHARDS" --no-progress \
      > "$WORK/$name.$i.log" 2>&1 &
    pids+=($!)
  done
  for pid in "${pids[@]}"; do wait "$pid" || rc=1; done
  [ "$rc" = 0 ] || { echo "sweep $plan: a run failed, see $WORK/$name.*.log and $WORK/sweep/failures.jsonl"; exit 1; }
  echo "sweep $name done ($(( $(date +%s) - t0 )) s)"
}

done_fit() {  # a fit already saved in WORK is kept (delete it to refit)
  [ -f "$1/fit.json" ]
}

# 0. the embedded corpus: Debian manual pages, 18 languages in 5 families, byte vocabulary
[ -f "$WORK/corpus/manifest.json" ] || $MS corpus build --source manpages --out "$WORK/corpus" --no-progress

# 1. small models (independence design + vary-one), then the largest model's baselines and two
#    more seeds of its uniform run (noise)
sweep "$HERE/small.yaml"
sweep "$HERE/large.yaml"
sweep "$HERE/noise.yaml"

# 2. fit the law on the small models only (cpu-400k and cpu-800k are held out)
$TOOLS select "$WORK/sweep/runs.csv" --max-N "$FIT_MAX_N" --out "$WORK/fit_small.csv"
done_fit "$WORK/fit_small_point" || $MS fit "$WORK/fit_small.csv" --law multilingual --method lbfgs \
  --out "$WORK/fit_small_point" > "$WORK/fit_small_point.txt"
done_fit "$WORK/fit_small" || $MS fit "$WORK/fit_small.csv" --law multilingual --method nuts --chains 2 \
  --draws "$DRAWS" --out "$WORK/fit_small" > "$WORK/fit_small.txt"

# 3. p* from the small models' fit (normalized objective, as He et al.), trained at cpu-800k
$MS recommend "$WORK/fit_small" --N "$N_LARGE" --D "$D_LARGE" --objective normalized --json > "$WORK/rec_small.json"
$TOOLS transfer-plan "$WORK/rec_small.json" --name pstar-small --template "$HERE/large.yaml" --out "$WORK/transfer_small.yaml"
sweep "$WORK/transfer_small.yaml"

# 4. p* at the largest size: the ratio law fitted to the cpu-800k runs trained so far
$TOOLS select "$WORK/sweep/runs.csv" --min-N "$N_LARGE" --exclude pstar-large --out "$WORK/fit_large.csv"
done_fit "$WORK/fit_large" || $MS fit "$WORK/fit_large.csv" --law ratio --method nuts --chains 2 \
  --draws "$DRAWS" --out "$WORK/fit_large" > "$WORK/fit_large.txt"
$MS recommend "$WORK/fit_large" --N "$N_LARGE" --D "$D_LARGE" --objective normalized --json > "$WORK/rec_large.json"
if [ "${SKIP_LARGE_PSTAR:-0}" != 1 ]; then
  $TOOLS transfer-plan "$WORK/rec_large.json" --name pstar-large --template "$HERE/large.yaml" --out "$WORK/transfer_large.yaml"
  sweep "$WORK/transfer_large.yaml"
fi

# 5. an intermediate size, held out too (planned last: the session's time allowed it at the end)
if [ "${SKIP_MID:-0}" != 1 ]; then sweep "$HERE/mid.yaml"; fi

# 5b. a second seed of both p* runs (planned after the fits, so it changes neither of them)
$TOOLS transfer-plan "$WORK/rec_small.json" --name pstar-small --seeds 1 --template "$HERE/large.yaml" --out "$WORK/transfer_small_s1.yaml"
sweep "$WORK/transfer_small_s1.yaml"
if [ "${SKIP_LARGE_PSTAR:-0}" != 1 ]; then
  $TOOLS transfer-plan "$WORK/rec_large.json" --name pstar-large --seeds 1 --template "$HERE/large.yaml" --out "$WORK/transfer_large_s1.yaml"
  sweep "$WORK/transfer_large_s1.yaml"
fi

# 6. independence test, held-out scores, measured transfer -> summary.json; the library's report
$MS independence "$WORK/sweep/runs.csv" > "$WORK/independence.txt"
cp "$WORK/sweep/runs.csv" "$DOCS/runs.csv"
$TOOLS summarize --runs "$DOCS/runs.csv" --fit-small "$WORK/fit_small" --fit-small-point "$WORK/fit_small_point" \
  --fit-large "$WORK/fit_large" --rec-small "$WORK/rec_small.json" --rec-large "$WORK/rec_large.json" \
  --fit-max-N "$FIT_MAX_N" --out "$DOCS/summary.json" | tee "$WORK/summary.txt"
$MS report "$WORK/fit_small" --runs "$DOCS/runs.csv" --fitted "$WORK/fit_small.csv" --N "$N_LARGE" --D "$D_LARGE" \
  --corpus "$WORK/corpus" \
  --out "$DOCS/library_report"
echo "study done in $(( $(date +%s) - t0 )) s; run table $DOCS/runs.csv, summary $DOCS/summary.json"
