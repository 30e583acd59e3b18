raise RuntimeError("native library missing")
