"""Check, clean and build task data: `adaptwise data check | fix | convert | from-repo`.

Modules, one job each: `rows` reads a task without stopping at the first bad row, `checks`
finds problems, `near_duplicates` pairs similar texts (MinHash LSH), `tokens` measures token
lengths, `report` turns findings into JSON and text, `fix` writes a cleaned copy of a task,
`convert` turns other dataset formats into a task, `repo_files` and `from_repo` turn a
repository into one, and `output` writes a task folder atomically.
"""
