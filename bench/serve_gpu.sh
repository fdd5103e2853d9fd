#!/usr/bin/env bash
# One GPU visit for issue 4's overhead target: HTTP streaming vs LLM.generate at 64 concurrent, on the device
# machine (python3 there has torch + triton; the server's pure-Python deps travel as wheels in .carry/wheels and
# SmolLM2's config + tokenizer in .carry/smollm2; weights are random: speed does not depend on their values).
#   run (carry [".carry"]):  [SHAPES="smollm2 qwen3-0.6b"] [LAYOUTS=true] [OUTPUTS="256 1024"] [REPEATS=3]
#                            [PIN=2] [PROFILE=1] [TRACE_ROOT=/tmp] [CHECK=1] [HOST_STEP=1] [COLD=1]
#                            [BASE_SRC=.carry/base_src] [SERVE_ARGS="--admission-window-ms 0"] bash bench/serve_gpu.sh
# SHAPES: smollm2 (the carried folder's own shape) or a model shape of bench/engine_throughput.py served with
# SmolLM2's tokenizer. LAYOUTS are values of `shoal serve --engine-process`. Each run also traces the engine child's
# loop; PIN=N runs the server and the offline engine on the first N physical cores (their hyperthreads included)
# and the clients on the other cores; PROFILE=1 also writes a
# cProfile of one offline run. CHECK=1 first runs greedy agreement with the CPU float32 path (bench/engine_gpu.py,
# random Qwen3) and fails unless CUDA float32 agrees token for token, graphs with asynchronous scheduling and without,
# then compares every step's inputs with the former _prepare (bench/step_inputs_gpu.py check);
# HOST_STEP=1 also times each shape's host phases against its device time (bench/host_step.py). COLD=1: clients open
# their connections inside the timed window (default: before it). BASE_SRC=DIR: each configuration is also served
# by the `shoal` package under DIR (an older commit's src, rows marked "base"), right after this tree's. SERVE_ARGS:
# more `shoal serve` flags for every server (named in the files and the table).
# Checks first (every stream ended with usage and [DONE], tokens = 64 x output), then prints a table last.
set -euo pipefail
python3 -m pip install --quiet --no-deps --no-index .carry/wheels/*.whl
out=${OUT:-bench/results}
if [ -n "${CHECK:-}" ]; then
  PYTHONPATH=src python3 bench/engine_gpu.py --only agree --json "$out/agreement.json" \
    --summary /tmp/agreement_summary.json > "$out/log_agreement.txt" 2>&1
  python3 - "$out/agreement.json" <<'PY'
import json, sys
rows = json.load(open(sys.argv[1]))["agreement_random_qwen3"]
for label in ("cuda float32, graphs", "cuda float32, graphs, sync"):
    got, want = rows["prefix_agreement"][label], [rows["max_tokens"]] * len(rows["prefix_agreement"][label])
    assert got == want, f"{label}: leading tokens equal to CPU float32 {got}, want {want}"
print("agreement: CUDA float32 (graphs, async and sync) equals CPU float32 token for token:", rows["prefix_agreement"])
PY
  # every step's inputs, the decode graphs' static buffers included, against the former _prepare
  PYTHONPATH=src python3 bench/step_inputs_gpu.py check .carry/smollm2 2>&1 | tail -4
fi
for shape in ${HOST_STEP:+${SHAPES:-smollm2}}; do
  shape_flag=$([ "$shape" = smollm2 ] || echo "--shape $shape")
  # shellcheck disable=SC2086
  PYTHONPATH=src python3 bench/host_step.py --model-dir .carry/smollm2 $shape_flag --output-tokens "${OUTPUTS%% *}" \
    --out "$out/host_step_$shape.json" 2>&1 | tail -14
done
for shape in ${SHAPES:-smollm2}; do
  shape_flag=$([ "$shape" = smollm2 ] || echo "--shape $shape")
  for layout in ${LAYOUTS:-true}; do
    for n in ${OUTPUTS:-256}; do
      for src in this ${BASE_SRC:+base}; do
        name="${shape}_proc-${layout}_out-${n}_pin-${PIN:-0}$([ -z "${COLD:-}" ] || echo _cold)$([ "$src" = this ] || echo _base)"
        name+=$([ -z "${SERVE_ARGS:-}" ] || echo "_$(echo "$SERVE_ARGS" | tr -cs 'a-zA-Z0-9' '-')")
        # shellcheck disable=SC2086
        PYTHONPATH=src python3 bench/serve_overhead.py --model-dir .carry/smollm2 --load-format dummy $shape_flag \
          --device cuda --dtype bfloat16 --prompt-tokens 128 --output-tokens "$n" --repeats "${REPEATS:-3}" \
          --warmup-runs 1 --client-procs 4 --skip-offline-main --serve-args "--engine-process $layout ${SERVE_ARGS:-}" \
          --trace-dir "${TRACE_ROOT:-$out}/trace_$name" --pin-server-cores "${PIN:-0}" \
          $([ -z "${COLD:-}" ] || echo --cold-connections) $([ "$src" = this ] || echo "--server-src $BASE_SRC") \
          $([ -z "${PROFILE:-}" ] || echo "--profile-offline $out/profile_$name.txt") \
          --out "$out/serve_overhead_gpu_$name.json" > "$out/log_$name.txt" 2>&1
      done
    done
  done
done
python3 - "$out" <<'PY'
import json, statistics, sys
from pathlib import Path
med = lambda xs: round(statistics.median(xs), 3)
print("\n| shape | engine process | out tokens | server cores (0: not pinned) | repeats | offline tok/s, default threads / 1 thread "
      "| HTTP tok/s | median ratio | ratio of medians | steps offline / HTTP | ms/step offline / child "
      "| device wait ms/step offline / child | child send ms | CPU s parent / engine of wall |")
print("|---|---|---:|---:|---:|---|---|---:|---:|---|---|---|---|---|")
for path in sorted(Path(sys.argv[1]).glob("serve_overhead_gpu_*.json")):
    r = json.loads(path.read_text())
    c, runs = r["config"], r["runs"]
    expected = int(c["concurrency"]) * int(c["output_tokens"])
    for run in runs:
        assert run["http_failed"] == 0 and run["http_tokens"] == expected, (path.name, run)
    ec = [run["engine_child"] for run in runs]
    one = [run["offline_steps"][1] for run in runs]  # the one-thread offline run, as the child steps
    shape = (c["shape"] if c["shape"] != "None" else "smollm2") + (" (base)" if c.get("server_src", "None") != "None"
                                                                   else "")
    shape += " cold" if c.get("cold_connections") == "True" else ""
    extra = c["serve_args"].split(maxsplit=2)[2:]  # past "--engine-process X"
    shape += f" `{extra[0]}`" if extra else ""
    print(f"| {shape} | {c['serve_args'].split()[1]} | {c['output_tokens']} | {c['pin_server_cores']} | {len(runs)} "
          f"| {med([x['offline_thread_tok_s'] for x in runs])} / {med([x['offline_thread_1cpu_tok_s'] for x in runs])} "
          f"| {med([x['http_tok_s'] for x in runs])} | {r['median_ratio']} | {r['ratio_of_medians']} "
          f"| {med([o[0] for o in one])} / {med([e['steps'] for e in ec])} "
          f"| {med([o[1] for o in one])} / {med([e['ms_per_iteration'] for e in ec])} "
          f"| {med([o[2] for o in one])} / {med([e['device_wait_ms'] for e in ec])} | {med([e['send_ms'] for e in ec])} "
          f"| {med([x['server_cpu_s']['parent'] for x in runs])} / {med([x['server_cpu_s']['engine'] for x in runs])} "
          f"of {med([x['http_wall_s'] for x in runs])} |")
PY
