"""A tiny ASGI app for the uvicorn integration test: HTTP answers with the running loop's module,
a websocket echoes text upper-cased (uvicorn upgrades with transport.set_protocol)."""

import asyncio


async def app(scope, receive, send):
    if scope["type"] == "http":
        body = f"loop={type(asyncio.get_running_loop()).__module__}".encode()
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"text/plain")],
            }
        )
        await send({"type": "http.response.body", "body": body})
    elif scope["type"] == "websocket":
        await receive()
        await send({"type": "websocket.accept"})
        while True:
            msg = await receive()
            if msg["type"] == "websocket.disconnect":
                break
            await send({"type": "websocket.send", "text": msg.get("text", "").upper()})
