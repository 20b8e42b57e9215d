"""websockets (asyncio) wss echo server for bench_tls.py: python ws_tls_server.py PORT CERT KEY"""

import asyncio
import ssl
import sys

from websockets.asyncio.server import serve


async def echo(ws):
    async for message in ws:
        await ws.send(message)


async def main(port: int, cert: str, key: str) -> None:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    async with serve(
        echo, "127.0.0.1", port, ssl=ctx, compression=None, max_size=16 * 2**20
    ) as server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]), sys.argv[2], sys.argv[3]))
