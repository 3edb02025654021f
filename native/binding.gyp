{
  "targets": [
    {
      "target_name": "vmlockd_native",
      "sources": ["ofd.c"],
      "cflags": ["-Wall", "-Wextra", "-O2"]
    }
  ]
}
