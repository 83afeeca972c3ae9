package deploy

import (
	"context"
	"errors"
	"fmt"
	"net"
	"runtime"

	"golang.org/x/sys/unix"
)

// loopNetns is a fresh, unnamed network namespace with only the loopback
// interface up. It lives in one OS thread of this process: functions passed
// to do run on that thread, so sockets they open and processes they start
// are inside the namespace. Nothing outside it is touched and no global
// name is created, so it cannot collide with other tests; it vanishes once
// the thread and every process started in it are gone.
type loopNetns struct {
	fns  chan func()
	done chan struct{}
}

// newLoopNetns needs CAP_SYS_ADMIN (root).
func newLoopNetns() (*loopNetns, error) {
	ns := &loopNetns{fns: make(chan func()), done: make(chan struct{})}
	ready := make(chan error, 1)
	go func() {
		// Never unlocked: the thread exits with the goroutine, so the
		// namespace never leaks into other goroutines.
		runtime.LockOSThread()
		defer close(ns.done)
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			ready <- fmt.Errorf("unshare(CLONE_NEWNET): %w", err)
			return
		}
		if err := loopbackUp(); err != nil {
			ready <- err
			return
		}
		ready <- nil
		for fn := range ns.fns {
			fn()
		}
	}()
	if err := <-ready; err != nil {
		<-ns.done
		return nil, err
	}
	return ns, nil
}

// loopbackUp sets IFF_UP on lo in the calling thread's namespace.
func loopbackUp() error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("socket: %w", err)
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq("lo")
	if err != nil {
		return err
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return fmt.Errorf("SIOCGIFFLAGS lo: %w", err)
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	if err := unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr); err != nil {
		return fmt.Errorf("SIOCSIFFLAGS lo up: %w", err)
	}
	return nil
}

// do runs fn on the namespace's thread and waits for it.
func (ns *loopNetns) do(fn func()) {
	finished := make(chan struct{})
	ns.fns <- func() { defer close(finished); fn() }
	<-finished
}

// dial opens a TCP connection from inside the namespace. The connect runs
// on the namespace's thread; ctx bounds it.
func (ns *loopNetns) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	var conn net.Conn
	err := errors.New("not dialed")
	ns.do(func() {
		d := net.Dialer{}
		conn, err = d.DialContext(ctx, network, addr)
	})
	return conn, err
}

// close ends the namespace's thread.
func (ns *loopNetns) close() {
	close(ns.fns)
	<-ns.done
}
