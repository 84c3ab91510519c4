;; A module with no _start: not a WASI command.
(module (memory (export "memory") 1) (func (export "main")))
