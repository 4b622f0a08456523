//go:build unix

package browser

import "syscall"

// sysProcAttr puts the browser in a process group of its own, so that
// killGroup reaches its renderers and zygotes too, and a terminal's Ctrl-C
// reaches only moltgate, which then stops the browser in order.
func sysProcAttr() *syscall.SysProcAttr {
	a := &syscall.SysProcAttr{Setpgid: true}
	setParentDeathSignal(a)
	return a
}

// terminate asks the browser to exit.
func terminate(pid int) { _ = syscall.Kill(pid, syscall.SIGTERM) }

// killGroup kills the browser and every process it started.
func killGroup(pid int) { _ = syscall.Kill(-pid, syscall.SIGKILL) }
