#!/usr/bin/env bash
# Reruns the whole CPU-scale study (docs/cpu_study/report.md) with the library's own commands.
# Finished runs are skipped and half-finished ones resume, so rerunning after an interruption only
# does what is missing; a fit already saved in WORK_DIR is kept (delete its folder to refit).
#
#   examples/cpu_study/run_study.sh [WORK_DIR]     (default /tmp/cpu_study)
#
# Environment: SHARDS (parallel sweep processes, default 2), MULTISCALE (the CLI, default
# `multiscale`), PYTHON (default python), DOCS (where the run table, summary, printouts and report
# plots go, default docs/cpu_study), NUTS_CHAINS (default 4), NUTS_DRAWS (default 2000; warm-up
# as many), NICE (default 19: every sweep and fit runs at this niceness).
#
# Sizes: the law is fitted on cpu-100k, cpu-200k and cpu-400k (N 100,672 / 201,280 / 443,232),
# each at 2e5 and 4e5 tokens; cpu-800k (803,968) and cpu-1.6m (1,550,560, 15.4x cpu-100k) are
# held out. The transfer comparison (claim 3) is trained and measured at cpu-1.6m.
set -euo pipefail

HERE="$(cd "$(dirname "$0")" && pwd)"
WORK="${1:-/tmp/cpu_study}"
SHARDS="${SHARDS:-2}"
MS="nice -n ${NICE:-19} ${MULTISCALE:-multiscale}"
PY="${PYTHON:-python}"
DOCS="${DOCS:-docs/cpu_study}"
CHAINS="${NUTS_CHAINS:-4}"
DRAWS="${NUTS_DRAWS:-2000}"
TOOLS="nice -n ${NICE:-19} $PY $HERE/study_tools.py"
N_LARGE=1550560  # cpu-1.6m non-embedding parameters (`multiscale presets`)
D_LARGE=198656   # 2e5 tokens rounded down to whole steps of 16 x 128 tokens
FIT_MAX_N=500000 # fitted: N < 5e5 (cpu-100k, cpu-200k, cpu-400k); held out: cpu-800k, cpu-1.6m
TRANSFER=pstar-small3,pstar-at1.6m  # the mixture names of the recommended runs at cpu-1.6m
LATE=temp0.3-s1,temp0.3-s2,temp0.7-s1,temp0.7-s2  # stage 5b (noise_temp.yaml): not in the largest-size fit
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

fit() {  # fit OUT ARGS...: `multiscale fit ARGS --out WORK/OUT`, printout in WORK/OUT.txt; kept if done
  local out="$1"; shift
  [ -f "$WORK/$out/fit.json" ] || $MS fit "$@" --out "$WORK/$out" > "$WORK/$out.txt"
  echo "fit $out done ($(( $(date +%s) - t0 )) s)"
}

# 0. the embedded corpus: Debian manual pages, 18 languages in 5 families, byte vocabulary
[ -f "$WORK/corpus/manifest.json" ] || $MS corpus build --source manpages --out "$WORK/corpus" --no-progress

# 1. the fitted sizes: independence design at cpu-100k / 2e5, vary-one + uniform at all 6 (N, D)
sweep "$HERE/small.yaml"

# 2. the small-model fits (in the background) while the largest model's baselines, vary-one points
#    and two more uniform seeds train; then the first study's cpu-800k runs (held out; they exist
#    already in the committed study and are skipped when WORK_DIR holds them)
$TOOLS select "$WORK/sweep/runs.csv" --max-N "$FIT_MAX_N" --out "$WORK/fit_small.csv"
( fit fit_small_point "$WORK/fit_small.csv" --law multilingual --method lbfgs
  fit fit_small "$WORK/fit_small.csv" --law multilingual --method nuts --chains "$CHAINS" --draws "$DRAWS" ) &
fits=$!
sweep "$HERE/large.yaml"
sweep "$HERE/noise.yaml"
for p in cpu800k cpu800k_s1 cpu800k_s2; do sweep "$HERE/$p.yaml"; done
wait "$fits"

# 3. p* from the small models' fit (normalized objective, as He et al.), for cpu-1.6m at 2e5 tokens
$MS recommend "$WORK/fit_small" --N "$N_LARGE" --D "$D_LARGE" --objective normalized --json > "$WORK/rec_small.json"

# 4. p* at the largest size: the ratio law fitted to the cpu-1.6m runs of stage 2 only (10 runs)
$TOOLS select "$WORK/sweep/runs.csv" --min-N "$N_LARGE" --exclude "$TRANSFER,$LATE" --out "$WORK/fit_large.csv"
fit fit_large "$WORK/fit_large.csv" --law ratio --method nuts --chains "$CHAINS" --draws "$DRAWS"
$MS recommend "$WORK/fit_large" --N "$N_LARGE" --D "$D_LARGE" --objective normalized --json > "$WORK/rec_large.json"

# 5. both recommendations trained at cpu-1.6m with seeds 0, 1 and 2 (uniform has 3 seeds too)
$TOOLS transfer-plan "pstar-small3=$WORK/rec_small.json" "pstar-at1.6m=$WORK/rec_large.json" \
  --template "$HERE/large.yaml" --seeds 0,1,2 --out "$WORK/transfer.yaml"
sweep "$WORK/transfer.yaml"

# 5b. the temperature baselines with seeds 1 and 2, so every mixture of claim 3 has 3 seeds
sweep "$HERE/noise_temp.yaml"

# 6. independence test, held-out scores, measured transfer -> summary.json; the library's report
$MS independence "$WORK/sweep/runs.csv" > "$WORK/independence.txt"
cp "$WORK/sweep/runs.csv" "$DOCS/runs.csv"
cp "$WORK"/{fit_small.txt,fit_small_point.txt,fit_large.txt,independence.txt} "$DOCS/"
$TOOLS summarize --runs "$DOCS/runs.csv" --fit-small "$WORK/fit_small" --fit-small-point "$WORK/fit_small_point" \
  --fit-large "$WORK/fit_large" --rec-small "$WORK/rec_small.json" --rec-large "$WORK/rec_large.json" \
  --fit-max-N "$FIT_MAX_N" --out "$DOCS/summary.json" | tee "$WORK/summary.txt"
$MS report "$WORK/fit_small" --runs "$DOCS/runs.csv" --fitted "$WORK/fit_small.csv" --N "$N_LARGE" --D "$D_LARGE" \
  --corpus "$WORK/corpus" --out "$DOCS/library_report"
echo "study done in $(( $(date +%s) - t0 )) s; run table $DOCS/runs.csv, summary $DOCS/summary.json"
