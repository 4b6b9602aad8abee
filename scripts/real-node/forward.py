#!/usr/bin/python3
"""Forward a host loopback port into the cluster's private network namespace.

Usage: forward.py NETNS_FILE LISTEN_PORT TARGET_HOST TARGET_PORT MARKER

Binds 127.0.0.1:LISTEN_PORT in the caller's (host) network namespace, then enters the network
namespace NETNS_FILE (e.g. /proc/HOLDER/ns/net). A socket keeps the namespace it was created in,
so the listening socket stays on the host while every outgoing connection is made inside the
cluster's namespace, to TARGET_HOST:TARGET_PORT. Plain TCP, both directions, so TLS, HTTP/2 and
the SPDY/WebSocket upgrades of `kubectl exec`/`port-forward` pass unchanged.

MARKER is not used; start.sh passes its run directory so stop.sh can tell this process is its own.
Exits on SIGTERM.
"""
import ctypes
import os
import signal
import socket
import sys
import threading


def pump(src, dst):
    try:
        while True:
            data = src.recv(65536)
            if not data:
                break
            dst.sendall(data)
    except OSError:
        pass
    finally:
        for s, how in ((dst, socket.SHUT_WR), (src, socket.SHUT_RD)):
            try:
                s.shutdown(how)
            except OSError:
                pass


def serve(client, target):
    try:
        upstream = socket.create_connection(target, timeout=10)
        upstream.settimeout(None)
    except OSError as e:
        print(f"forward.py: connect {target}: {e}", file=sys.stderr, flush=True)
        client.close()
        return
    t = threading.Thread(target=pump, args=(upstream, client), daemon=True)
    t.start()
    pump(client, upstream)
    t.join()
    client.close()
    upstream.close()


def main():
    if len(sys.argv) != 6:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    netns, port, host, tport = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", port))
    listener.listen(64)
    with open(netns) as f:
        # os.setns is Python >= 3.12; Debian bookworm has 3.11.
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.setns(f.fileno(), 0x40000000) != 0:  # CLONE_NEWNET
            raise OSError(ctypes.get_errno(), f"setns({netns})")
    print(f"forward.py: 127.0.0.1:{port} (host) -> {host}:{tport} (in {netns})", file=sys.stderr, flush=True)
    while True:
        client, _ = listener.accept()
        threading.Thread(target=serve, args=(client, (host, tport)), daemon=True).start()


if __name__ == "__main__":
    main()
