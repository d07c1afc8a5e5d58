"""mosrun -S: a commands file streamed into one disciplined runner (`bash -c LINE` per line)."""
