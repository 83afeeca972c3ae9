package main

import (
	"os/exec"
	"runtime"
	"syscall"
)

// bindToParent makes the kernel send the command SIGTERM when this process
// dies, even by SIGKILL, which no handler sees: a command must not go on
// as if it held a lock that nobody keeps alive any more (without it, it ran
// on until its lease expired and another holder took the lock).
//
// Linux ties the parent-death signal to the thread that started the child,
// not the process, and Go may retire a thread; so the caller's goroutine
// stays on its thread until release is called, after the command ended.
func bindToParent(cmd *exec.Cmd) (release func()) {
	runtime.LockOSThread()
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Pdeathsig = syscall.SIGTERM
	return runtime.UnlockOSThread
}
