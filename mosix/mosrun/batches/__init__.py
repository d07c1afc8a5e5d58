"""mosrun -S: a commands file streamed into one disciplined runner that spawns `bash -c LINE` per line."""
