"""A network guard for the test suite, loaded by every Python process whose PYTHONPATH holds
this folder (tests/test_offline.py puts it there).

When `ADAPTWISE_NETGUARD_LOG` names a file, every name lookup of a host that is not the loopback
and every connection to such a host is refused and written to that file, with the Python stack
that asked for it, so a test can say which library reached out. Loopback (127.0.0.0/8, ::1,
localhost) and Unix sockets are allowed: the tests' own servers live there.
"""

import os

_LOG = os.environ.get("ADAPTWISE_NETGUARD_LOG")

if _LOG:
    import ipaddress
    import socket
    import traceback

    def _is_loopback(host) -> bool:
        if host is None or host in ("", "localhost", "localhost.localdomain"):
            return True
        if isinstance(host, bytes):
            host = host.decode("ascii", "replace")
        try:
            return ipaddress.ip_address(str(host).split("%", 1)[0]).is_loopback
        except ValueError:
            return False

    def _refuse(what: str, host) -> None:
        stack = "".join(traceback.format_stack(limit=25)[:-2])
        with open(_LOG, "a", encoding="utf-8") as log:
            log.write(f"--- pid {os.getpid()}: {what} {host!r}\n{stack}\n")

    _getaddrinfo = socket.getaddrinfo
    _gethostbyname = socket.gethostbyname
    _gethostbyname_ex = socket.gethostbyname_ex
    _connect = socket.socket.connect
    _connect_ex = socket.socket.connect_ex

    def getaddrinfo(host, *args, **kwargs):
        if not _is_loopback(host):
            _refuse("name lookup", host)
            raise socket.gaierror(socket.EAI_NONAME, "refused by the tests' network guard")
        return _getaddrinfo(host, *args, **kwargs)

    def gethostbyname(host):
        if not _is_loopback(host):
            _refuse("name lookup", host)
            raise socket.gaierror(socket.EAI_NONAME, "refused by the tests' network guard")
        return _gethostbyname(host)

    def gethostbyname_ex(host):
        if not _is_loopback(host):
            _refuse("name lookup", host)
            raise socket.gaierror(socket.EAI_NONAME, "refused by the tests' network guard")
        return _gethostbyname_ex(host)

    def _checked(sock, address) -> None:
        if sock.family in (socket.AF_INET, socket.AF_INET6) and not _is_loopback(address[0]):
            _refuse("connection", address)
            raise ConnectionRefusedError("refused by the tests' network guard")

    def connect(self, address):
        _checked(self, address)
        return _connect(self, address)

    def connect_ex(self, address):
        _checked(self, address)
        return _connect_ex(self, address)

    socket.getaddrinfo = getaddrinfo
    socket.gethostbyname = gethostbyname
    socket.gethostbyname_ex = gethostbyname_ex
    socket.socket.connect = connect
    socket.socket.connect_ex = connect_ex

if os.environ.get("ADAPTWISE_TEST_AVX512_BF16") == "1":
    # Make bitsandbytes believe this CPU has AVX-512 BF16, the case in which importing it asks
    # the `kernels` package for a hub kernel, so that the tests cover it on any CPU.
    import importlib.abc
    import importlib.machinery
    import sys

    class _FakeAvx512Bf16(importlib.abc.MetaPathFinder):
        def find_spec(self, fullname, path, target=None):
            if fullname != "bitsandbytes.functional":
                return None
            spec = importlib.machinery.PathFinder.find_spec(fullname, path)
            if spec is None or spec.loader is None:
                return spec
            run = spec.loader.exec_module

            def exec_module(module):
                run(module)
                module.has_avx512bf16 = lambda: True

            spec.loader.exec_module = exec_module
            return spec

    sys.meta_path.insert(0, _FakeAvx512Bf16())
