"""Errors the user can fix: the CLI prints them as one line and exits with status 2."""


class AdaptwiseError(Exception):
    """An error the user can fix; printed as one line, exit status 2."""


class TaskError(AdaptwiseError):
    """A bad task file or data file."""


class SetupError(AdaptwiseError):
    """Something missing from the installation."""


class OutOfMemory(AdaptwiseError):
    """A method ran out of memory (GPU or host); the run records it and goes on."""


def describe_os_error(exc: OSError) -> str:
    """One line for a failed file operation: the path, what happened, what to do."""
    import errno

    path = exc.filename or ""
    if exc.filename2:
        path = f"{path} -> {exc.filename2}"
    what = exc.strerror or str(exc) or type(exc).__name__
    hints = {
        errno.ENOSPC: "free some disk space and rerun (finished results are kept)",
        errno.EDQUOT: "free some space under your quota and rerun (finished results are kept)",
        errno.EROFS: "the file system is read-only; choose a writable folder (e.g. --out)",
        errno.EACCES: "choose a folder you may write to (e.g. --out) or change its permissions",
        errno.EPERM: "choose a folder you may write to (e.g. --out) or change its permissions",
        errno.EEXIST: "choose another path",
        errno.ENOTDIR: "a part of the path is a file, not a folder; choose another path",
        errno.EISDIR: "it is a folder; name a file",
        errno.ENOENT: "check the path",
        errno.ENAMETOOLONG: "choose a shorter path",
    }
    hint = hints.get(exc.errno, "check the path and rerun")
    return f"{path}: {what}; {hint}" if path else f"{what}; {hint}"


def is_out_of_memory(exc: BaseException) -> bool:
    """torch.cuda.OutOfMemoryError, the CPU allocator's failure, Python's MemoryError, or the
    system refusing to map memory (ENOMEM: a file or a shared library that cannot be mapped
    under `ulimit -v` or a cgroup limit)."""
    import errno

    if isinstance(exc, MemoryError | OutOfMemory):
        return True
    if type(exc).__name__ == "OutOfMemoryError":
        return True
    if isinstance(exc, OSError) and exc.errno == errno.ENOMEM:
        return True
    if isinstance(exc, RuntimeError | OSError | ImportError):
        text = str(exc)
        return (
            "out of memory" in text.lower()
            or "cannot allocate memory" in text.lower()
            or "DefaultCPUAllocator: can't allocate memory" in text
            or "not enough memory" in text
            or "failed to map segment from shared object" in text
        )
    return False


def describe_failure(exc: Exception) -> tuple[str, int]:
    """The one line and the exit status the top-level boundaries (the CLI, the TUI's job
    process) give for an exception: 2 for bad input or a fault that names its fix (an
    AdaptwiseError, an OS error, running out of memory), 1 for anything unexpected."""
    if isinstance(exc, AdaptwiseError):
        return str(exc), 2
    if isinstance(exc, OSError):
        return describe_os_error(exc), 2
    if is_out_of_memory(exc):
        return "out of memory; lower --batch-size or --limit, or use a smaller --model", 2
    first = (str(exc).strip().splitlines() or [""])[0][:300]
    return f"unexpected {type(exc).__name__}: {first}", 1
