package browser

import "syscall"

// setParentDeathSignal kills the browser when moltgate dies without
// stopping it (a crash, kill -9), so no orphan keeps running.
func setParentDeathSignal(a *syscall.SysProcAttr) { a.Pdeathsig = syscall.SIGKILL }
