"""Replays the adbd side of AOSP's adb protocol (protocol.txt, CNXN/AUTH) as adb 1.0.41 (platform-tools 29.0.6) expects it.

A STAND-IN for a phone's adbd that never gets USB-debugging permission. NOT captured from a phone.
It refuses what a real unauthorized adbd refuses: every signature and the offered public key.

Written from AOSP's adb protocol description (packages/modules/adb/protocol.txt, "CONNECT" and
"AUTH" sections; the same framing in adb 1.0.41 / platform-tools 29.0.6, the Debian adb client the
tests drive). It lets the REAL adb client and server reach the "unauthorized" state over TCP
(`adb connect 127.0.0.1:PORT`), exactly as with a phone whose "Allow USB debugging?" prompt is not
accepted: the device answers CONNECT with an AUTH TOKEN, rejects every signature with a new token,
and never answers the public key the host then offers.

Message framing (little endian): command, arg0, arg1, data_length, data_checksum (byte sum),
magic (command ^ 0xffffffff), then data_length bytes of payload.
"""
from __future__ import annotations

import os
import socket
import struct
import threading

A_CNXN = 0x4E584E43
A_AUTH = 0x48545541
AUTH_TOKEN, AUTH_SIGNATURE, AUTH_RSAPUBLICKEY = 1, 2, 3
HEADER = struct.Struct("<6I")


def message(command: int, arg0: int, arg1: int, payload: bytes = b"") -> bytes:
    return HEADER.pack(command, arg0, arg1, len(payload), sum(payload) & 0xFFFFFFFF, command ^ 0xFFFFFFFF) + payload


def _read_exact(conn: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = conn.recv(n - len(data))
        if not chunk:
            raise ConnectionError("closed")
        data += chunk
    return data


class UnauthorizedAdbd:
    """Listens on 127.0.0.1:<port>; each connection is a phone that never authorizes this host."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(4)
        self.port = self.sock.getsockname()[1]
        self.public_keys_offered = 0
        self._stop = False
        self._conns: list[socket.socket] = []
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self._conns.append(conn)
            threading.Thread(target=self._talk, args=(conn,), daemon=True).start()

    def _talk(self, conn: socket.socket) -> None:
        try:
            while True:
                command, arg0, _arg1, length, _check, _magic = HEADER.unpack(_read_exact(conn, HEADER.size))
                if length:
                    _read_exact(conn, length)
                if command == A_CNXN or (command == A_AUTH and arg0 == AUTH_SIGNATURE):
                    # a device that requires auth answers CONNECT, and every rejected signature, with a token
                    conn.sendall(message(A_AUTH, AUTH_TOKEN, 0, os.urandom(20)))
                elif command == A_AUTH and arg0 == AUTH_RSAPUBLICKEY:
                    self.public_keys_offered += 1  # the phone would now show the prompt nobody accepts
        except (ConnectionError, OSError, struct.error):
            pass

    def close(self) -> None:
        self._stop = True
        for conn in self._conns:
            try:
                conn.close()
            except OSError:
                pass
        self.sock.close()
