;; Imports that enarx cannot satisfy.
(module
  (import "env" "host_call" (func))
  (import "wasi_snapshot_preview1" "fd_write" (func (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "no_such_call" (func))
  (memory (export "memory") 1)
  (func (export "_start")))
