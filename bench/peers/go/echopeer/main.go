// echopeer: the Go peer of bench/io_echo, a TCP echo server written with
// net.Conn and a goroutine per connection, started by io_echo once per
// measurement, with GOMAXPROCS and the CPU it may run on set as for io_echo's
// own servers:
//
//	echopeer -addr IP
//
// It listens on IP, port 0, and prints "port N gomaxprocs P GOVERSION". Each accepted
// connection (TCP_NODELAY, Go's default, set again here) is echoed by a
// read/write loop through a 64 KiB buffer, as io_echo's rt and blocking
// servers do (io.Copy would splice(2) through a pipe instead, which none
// of the others does). A connection ends at its first read or write error:
// the client resets them all when it is done. When a line (or the end) comes
// on stdin, it stops accepting, waits up to 5 s for every connection to end
// and prints "ok CONNS READ ECHOED" (connections accepted and ended, bytes
// read, bytes echoed, counted by each connection) or "fail WHY", then exits.
package main

import (
	"bufio"
	"flag"
	"fmt"
	"net"
	"os"
	"runtime"
	"sync"
	"time"
)

const bufSize = 64 << 10

type totals struct {
	sync.Mutex
	conns, ended     int64
	read, echoed     int64
	open             sync.WaitGroup
	acceptorFinished chan struct{}
}

func fail(format string, a ...interface{}) {
	fmt.Printf("fail "+format+"\n", a...)
	os.Exit(1)
}

func echo(c *net.TCPConn, t *totals) {
	defer t.open.Done()
	c.SetNoDelay(true)
	buf := make([]byte, bufSize)
	var read, echoed int64
	for {
		n, err := c.Read(buf)
		read += int64(n)
		if n > 0 {
			w, werr := c.Write(buf[:n])
			echoed += int64(w)
			if werr != nil {
				break
			}
		}
		if err != nil {
			break
		}
	}
	c.Close()
	t.Lock()
	t.ended++
	t.read += read
	t.echoed += echoed
	t.Unlock()
}

func accept(l *net.TCPListener, t *totals) {
	defer close(t.acceptorFinished)
	for {
		c, err := l.AcceptTCP()
		if err != nil {
			return // the listener was closed
		}
		t.Lock()
		t.conns++
		t.Unlock()
		t.open.Add(1)
		go echo(c, t)
	}
}

func main() {
	addr := flag.String("addr", "127.0.0.1", "the address to listen on (any port)")
	flag.Parse()
	l, err := net.ListenTCP("tcp4", &net.TCPAddr{IP: net.ParseIP(*addr)})
	if err != nil {
		fail("listen: %v", err)
	}
	t := &totals{acceptorFinished: make(chan struct{})}
	go accept(l, t)
	fmt.Printf("port %d gomaxprocs %d %s\n", l.Addr().(*net.TCPAddr).Port, runtime.GOMAXPROCS(0),
		runtime.Version())
	bufio.NewReader(os.Stdin).ReadString('\n')
	l.Close()
	<-t.acceptorFinished // no Add after this: Wait may begin
	ended := make(chan struct{})
	go func() {
		t.open.Wait()
		close(ended)
	}()
	select {
	case <-ended:
	case <-time.After(5 * time.Second):
		t.Lock()
		defer t.Unlock()
		fail("%d of %d connections still open 5 s after the client ended", t.conns-t.ended, t.conns)
	}
	fmt.Printf("ok %d %d %d\n", t.conns, t.read, t.echoed)
}
