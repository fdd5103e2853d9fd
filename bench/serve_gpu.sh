#!/usr/bin/env bash
# One GPU visit for issue 4's overhead target: HTTP streaming vs LLM.generate at 64 concurrent, on the device
# machine (python3 there has torch + triton; the server's pure-Python deps travel as wheels in .carry/wheels and
# SmolLM2's config + tokenizer in .carry/smollm2; weights are random: speed does not depend on their values).
#   run (carry [".carry"]):  [LAYOUTS="true false"] [OUTPUTS="256 1024"] [REPEATS=3] bash bench/serve_gpu.sh
# LAYOUTS are values of `shoal serve --engine-process`. Checks first (every stream ended with usage and [DONE],
# tokens = 64 x output), then prints a table last.
set -euo pipefail
python3 -m pip install --quiet --no-deps --no-index .carry/wheels/*.whl
out=${OUT:-bench/results}
for layout in ${LAYOUTS:-true false}; do
  for n in ${OUTPUTS:-256}; do
    PYTHONPATH=src python3 bench/serve_overhead.py --model-dir .carry/smollm2 --load-format dummy --device cuda \
      --dtype bfloat16 --prompt-tokens 128 --output-tokens "$n" --repeats "${REPEATS:-3}" --warmup-runs 1 \
      --client-procs 4 --skip-offline-main --serve-args "--engine-process $layout" \
      --out "$out/serve_overhead_gpu_h100_proc-${layout}_out-$n.json" > "$out/log_${layout}_$n.txt" 2>&1
  done
done
python3 - "$out" <<'PY'
import json, sys
from pathlib import Path
print("\n| engine process | output tokens | card | LLM.generate tok/s (torch threads default / 1) | HTTP tok/s | tokens/chunk | median ratio |")
print("|---|---:|---|---|---|---|---:|")
for path in sorted(Path(sys.argv[1]).glob("serve_overhead_gpu_h100_proc-*.json")):
    r = json.loads(path.read_text())
    expected = int(r["config"]["concurrency"]) * int(r["config"]["output_tokens"])
    for run in r["runs"]:
        assert run["http_failed"] == 0 and run["http_tokens"] == expected, (path.name, run)
    c, runs = r["config"], r["runs"]
    cell = lambda key: ", ".join(str(run[key]) for run in runs)
    print(f"| {c['serve_args'].split()[-1]} | {c['output_tokens']} | {r['machine']['gpu']} | {cell('offline_thread_tok_s')} / {cell('offline_thread_1cpu_tok_s')} "
          f"| {cell('http_tok_s')} | {cell('tokens_per_chunk')} | {r['median_ratio']} |")
PY
