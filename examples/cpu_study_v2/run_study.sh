#!/usr/bin/env bash
# Runs the second CPU study (docs/cpu_study_v2/report.md, plan in README.md) with the library's own
# commands, stage by stage. Finished runs are skipped and half-finished ones resume, so rerunning
# after an interruption does only what is missing; a fit already saved in WORK_DIR is kept (delete
# its folder to refit).
#
#   examples/cpu_study_v2/run_study.sh [WORK_DIR] [STAGE ...]   (default /tmp/cpu_study_v2; A B C D E F)
#
# Stages: A (seed sweep: stage_a1.yaml, stage_a2.yaml; NUTS fit of the multilingual law on it),
# B (static design, stage_b.yaml; fit on A + B; p* at the target), C (active design: `multiscale
# next` on A's fit with the 6ND compute of B; fit on A + C; p* at the target), D (each design's p*
# and the baselines at cpu-1.6m with seeds 0-2; `multiscale compare` with the largest size held
# out), E (the active design again, with k large enough that it spends all of F: `next` ends the
# batch at the budget; fit on A + E; p* at the target), F (E's p* at cpu-1.6m, seeds 0-2; its
# baselines are D's). After each stage its rows go to DOCS/runs_stage_<X>.csv and the whole table to DOCS/runs.csv.
#
# Environment: SHARDS (parallel sweep processes, default 2), MULTISCALE (the CLI, default
# `multiscale`), PYTHON (default python), DOCS (default docs/cpu_study_v2), NUTS_CHAINS (default 4),
# NUTS_DRAWS (default 1000; warm-up as many), NICE (default 19), LAW (the law whose p* each design
# recommends, default multilingual), K (batch size of `next` in stage C, default 8), K_FULL (stage E's,
# default 264: every candidate may be chosen, so F ends the batch), RESTORE (default 1: the
# runs of the committed DOCS/runs.csv are put back into WORK_DIR/sweep and not trained again).
set -euo pipefail

HERE="$(cd "$(dirname "$0")" && pwd)"
WORK="${1:-/tmp/cpu_study_v2}"
shift || true
STAGES="${*:-A B C D E F}"
SHARDS="${SHARDS:-2}"
MS="nice -n ${NICE:-19} ${MULTISCALE:-multiscale}"
PY="${PYTHON:-python}"
DOCS="${DOCS:-docs/cpu_study_v2}"
CHAINS="${NUTS_CHAINS:-4}"
DRAWS="${NUTS_DRAWS:-1000}"
LAW="${LAW:-multilingual}"
TOOLS="nice -n ${NICE:-19} $PY $HERE/study_v2.py"
CAP="japonic=128000"  # unique training tokens of the data-constrained family
N_LARGE=1550560       # cpu-1.6m non-embedding parameters (`multiscale presets`), held out of every fit
D_LARGE=798720        # 8e5 tokens rounded down to whole steps of 16 x 128 tokens
mkdir -p "$WORK" "$DOCS"
t0=$(date +%s)
note() { echo "$(date -u +%FT%TZ) load $(cut -d' ' -f1-3 /proc/loadavg) $*" | tee -a "$WORK/stages.log"; }

sweep() {  # sweep PLAN: SHARDS processes in parallel, one log each
  local plan="$1" name pids=() rc=0
  name="$(basename "$plan" .yaml)"
  note "sweep $name start"
  for ((i = 0; i < SHARDS; i++)); do
    $MS sweep "$plan" --out "$WORK/sweep" --corpus "$WORK/corpus" --shard "$i/$SHARDS" --no-progress \
      > "$WORK/$name.$i.log" 2>&1 &
    pids+=($!)
  done
  for pid in "${pids[@]}"; do wait "$pid" || rc=1; done
  [ "$rc" = 0 ] || { echo "sweep $plan: a run failed, see $WORK/$name.*.log and $WORK/sweep/failures.jsonl"; exit 1; }
  note "sweep $name done ($(( $(date +%s) - t0 )) s)"
}

fit() {  # fit OUT ARGS...: `multiscale fit ARGS --out WORK/OUT`, printout in WORK/OUT.txt; kept if done
  local out="$1"; shift
  [ -f "$WORK/$out/fit.json" ] || $MS fit "$@" --out "$WORK/$out" > "$WORK/$out.txt"
  note "fit $out done ($(( $(date +%s) - t0 )) s)"
}

rows() {  # rows OUT PLAN...: the rows of these plans' runs, from the shared table
  local out="$1"; shift
  $TOOLS select "$WORK/sweep" "$@" --corpus "$WORK/corpus" --out "$out" > /dev/null
}

recommend() {  # recommend FIT OUT: p* at cpu-1.6m / 8e5 tokens (normalized objective, epoch cap 4)
  $MS recommend "$WORK/$1" --N "$N_LARGE" --D "$D_LARGE" --objective normalized \
    --tokens "$(tokens_arg)" --json > "$WORK/$2"
}

tokens_arg() {  # FAM=TOKENS,... unique training tokens of every family in the corpus
  $PY -c "import sys; from multiscale.data.corpus import Corpus; c = Corpus.open(sys.argv[1]); \
print(','.join(f'{f}={c.train_tokens(f)}' for f in c.families))" "$WORK/corpus"
}

budget_flops() {  # F: the 6 N D of stage B, which stage C spends too
  $TOOLS compute "$HERE/stage_b.yaml" | $PY -c "import json, sys; print(json.load(sys.stdin)['total_flops_6ND'])"
}

# the runs already in the committed table (DOCS/runs.csv) are not trained again (RESTORE=0: retrain)
if [ "${RESTORE:-1}" = 1 ] && [ -f "$DOCS/runs.csv" ]; then
  $TOOLS restore "$DOCS/runs.csv" "$WORK/sweep" > "$WORK/restore.json"
  note "restored $DOCS/runs.csv into $WORK/sweep: $(cat "$WORK/restore.json")"
fi

# 0. the embedded corpus with japonic capped (its eval split is that of the uncapped corpus)
[ -f "$WORK/corpus/manifest.json" ] || $MS corpus build --source manpages --out "$WORK/corpus" \
  --max-train-tokens "$CAP" --no-progress > "$WORK/corpus.txt"

stage_A() {
  sweep "$HERE/stage_a1.yaml"
  sweep "$HERE/stage_a2.yaml"
  rows "$DOCS/runs_stage_a.csv" "$HERE/stage_a1.yaml" "$HERE/stage_a2.yaml"
  fit fit_a "$DOCS/runs_stage_a.csv" --law multilingual --method nuts --chains "$CHAINS" --draws "$DRAWS"
  cp "$WORK/fit_a.txt" "$DOCS/fit_a.txt"
}

stage_B() {
  sweep "$HERE/stage_b.yaml"
  rows "$DOCS/runs_stage_b.csv" "$HERE/stage_b.yaml"
  rows "$WORK/fit_static.csv" "$HERE/stage_a1.yaml" "$HERE/stage_a2.yaml" "$HERE/stage_b.yaml"
  fit fit_static "$WORK/fit_static.csv" --law "$LAW" --method nuts --chains "$CHAINS" --draws "$DRAWS"
  recommend fit_static rec_static.json
  cp "$WORK/fit_static.txt" "$WORK/rec_static.json" "$DOCS/"
}

stage_C() {
  if ! ${MULTISCALE:-multiscale} next --help > /dev/null 2>&1; then
    echo "stage C needs \`multiscale next\` (issue 14, part 1), which this checkout lacks"; exit 1
  fi
  [ -f "$WORK/stage_c.yaml" ] || $MS next "$WORK/fit_a" --N "$N_LARGE" --D "$D_LARGE" \
    --budget-flops "$(budget_flops)" --candidates "$HERE/stage_c_candidates.yaml" --k "${K:-8}" \
    --out "$WORK/stage_c.yaml" --json > "$WORK/next.json"
  cp "$WORK/stage_c.yaml" "$WORK/next.json" "$DOCS/"
  sweep "$WORK/stage_c.yaml"
  rows "$DOCS/runs_stage_c.csv" "$WORK/stage_c.yaml"
  rows "$WORK/fit_active.csv" "$HERE/stage_a1.yaml" "$HERE/stage_a2.yaml" "$WORK/stage_c.yaml"
  fit fit_active "$WORK/fit_active.csv" --law "$LAW" --method nuts --chains "$CHAINS" --draws "$DRAWS"
  recommend fit_active rec_active.json
  cp "$WORK/fit_active.txt" "$WORK/rec_active.json" "$DOCS/"
}

stage_D() {
  sweep "$HERE/stage_d_baselines.yaml"
  $TOOLS final-plan "static=$WORK/rec_static.json" "active=$WORK/rec_active.json" \
    --template "$HERE/stage_d_baselines.yaml" --out "$WORK/stage_d.yaml" > /dev/null
  cp "$WORK/stage_d.yaml" "$DOCS/"
  sweep "$WORK/stage_d.yaml"
  rows "$DOCS/runs_stage_d.csv" "$HERE/stage_d_baselines.yaml" "$WORK/stage_d.yaml"
  $TOOLS union "$WORK/sweep" --out "$WORK/runs_all.csv" > /dev/null
  $MS compare "$WORK/runs_all.csv" --laws multilingual,repetition,transfer_repetition --holdout largest-N \
    --method nuts --N "$N_LARGE" --D "$D_LARGE" --out "$WORK/compare" --json > "$WORK/compare.json"
  cp "$WORK/compare.json" "$DOCS/"
}

stage_E() {  # the active design at the full F: k large enough that the budget, not k, ends the batch;
  # --runs leaves out the candidates that repeat a run of A at its seed (stage C lacked it: two of its
  # eight runs were A's, trained again to the same losses)
  [ -f "$WORK/stage_e.yaml" ] || $MS next "$WORK/fit_a" --N "$N_LARGE" --D "$D_LARGE" \
    --budget-flops "$(budget_flops)" --candidates "$HERE/stage_c_candidates.yaml" --k "${K_FULL:-264}" \
    --runs "$DOCS/runs_stage_a.csv" --out "$WORK/stage_e.yaml" --json > "$WORK/next_full.json"
  cp "$WORK/stage_e.yaml" "$WORK/next_full.json" "$DOCS/"
  sweep "$WORK/stage_e.yaml"
  rows "$DOCS/runs_stage_e.csv" "$WORK/stage_e.yaml"
  rows "$WORK/fit_active_full.csv" "$HERE/stage_a1.yaml" "$HERE/stage_a2.yaml" "$WORK/stage_e.yaml"
  fit fit_active_full "$WORK/fit_active_full.csv" --law "$LAW" --method nuts --chains "$CHAINS" --draws "$DRAWS"
  recommend fit_active_full rec_active_full.json
  cp "$WORK/fit_active_full.txt" "$WORK/rec_active_full.json" "$DOCS/"
}

stage_F() {  # stage E's p* at cpu-1.6m with the seeds of stage D (its baselines are D's)
  $TOOLS final-plan "active_full=$WORK/rec_active_full.json" \
    --template "$HERE/stage_d_baselines.yaml" --out "$WORK/stage_f.yaml" > /dev/null
  cp "$WORK/stage_f.yaml" "$DOCS/"
  sweep "$WORK/stage_f.yaml"
  rows "$DOCS/runs_stage_f.csv" "$WORK/stage_f.yaml"
}

for stage in $STAGES; do
  "stage_$stage"
  $TOOLS union "$WORK/sweep" --out "$DOCS/runs.csv" > /dev/null
  $TOOLS walltimes "$WORK/sweep" --out "$DOCS/walltimes.csv" > "$WORK/walltimes.json"
  note "stage $stage done ($(( $(date +%s) - t0 )) s)"
done
