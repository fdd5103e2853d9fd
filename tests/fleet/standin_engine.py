"""A stand-in for `shoal serve` with the same lifecycle (ready, metrics, streaming, SIGTERM drain), for kubelet tests.

The kubelet's job is processes, addresses, readiness and drains, not inference; the real engine runs in e2e/.
`POST /crash` makes it exit 3, as a crashed engine would.
"""

import argparse
import asyncio
import json
import os
import signal

from aiohttp import web

parser = argparse.ArgumentParser()
parser.add_argument("--host")
parser.add_argument("--port", type=int)
parser.add_argument("--max-num-seqs", type=int, default=16)
args, _ = parser.parse_known_args()
state = {"draining": False, "inflight": 0}


async def ready(request):
    return web.Response(status=503 if state["draining"] else 200)


async def metrics(request):
    return web.Response(text=f'shoal:runtime_max_num_seqs{{model_name="m"}} {args.max_num_seqs}\n'
                             f'shoal:num_requests_running{{model_name="m"}} {state["inflight"]}\n')


async def crash(request):
    os._exit(3)


async def completions(request):
    if state["draining"]:
        return web.json_response({"error": {"message": "draining"}}, status=503)
    body = await request.json()
    state["inflight"] += 1
    try:
        response = web.StreamResponse()
        response.content_type = "text/event-stream"
        await response.prepare(request)
        for _ in range(body.get("max_tokens", 4)):
            await asyncio.sleep(0.05)
            await response.write(b"data: " + json.dumps({"choices": [{"text": "x"}]}).encode() + b"\n\n")
        await response.write(b"data: [DONE]\n\n")
        return response
    finally:
        state["inflight"] -= 1


async def main():
    app = web.Application()
    app.router.add_get("/ready", ready)
    app.router.add_get("/metrics", metrics)
    app.router.add_post("/crash", crash)
    app.router.add_post("/v1/completions", completions)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, args.host, args.port).start()
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()
    state["draining"] = True
    while state["inflight"]:
        await asyncio.sleep(0.05)
    await runner.cleanup()


asyncio.run(main())
