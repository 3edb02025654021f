{
  "targets": [
    {
      "target_name": "vmlockd_native",
      "sources": ["ofd.c", "segscan.c"],
      "cflags": ["-Wall", "-Wextra", "-O2"]
    }
  ]
}
