// tcppeer: the Go peer of bench/esock_tcp, written with net.Conn and a
// goroutine per socket, run by esock_tcp once per measurement:
//
//	tcppeer -case stream|bulk|rr|setup -conns N -size BYTES -dur SECONDS [-framed=false]
//
// It does what esock_tcp's plain program does over 127.0.0.1 (TCP_NODELAY,
// Go's default): stream sends messages of -size bytes after a 4-byte
// big-endian length, one Write each (bulk: unframed, Writes of -size bytes),
// for -dur seconds, then CloseWrite; each receiver reads through a 256 KiB
// bufio.Reader (io.ReadFull per message) and checks every message (length,
// sequence number in its first 8 bytes, the pattern after them) or every
// byte of the unframed stream (byte o is pat[o % 65521]); rr: 64-byte
// request/response, an echo goroutine per connection; setup: connect,
// CloseWrite, read to EOF, close, again, the server a goroutine per
// connection. It prints one line, "ok MSGS BYTES SECS P50_US P99_US", or
// "fail WHY" and exits 1.
package main

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"sort"
	"sync"
	"sync/atomic"
	"time"
)

const (
	period = 65521
	bulk   = 64 << 10
	rdBuf  = 256 << 10
	rrSize = 64
)

var (
	msgPat  = make([]byte, bulk)
	bulkPat = make([]byte, period+bulk)
)

func init() {
	for i := range msgPat {
		msgPat[i] = byte(i*7 + 1)
	}
	x := uint32(2463534242)
	for i := 0; i < period; i++ {
		x ^= x << 13
		x ^= x >> 17
		x ^= x << 5
		bulkPat[i] = byte(x)
	}
	for i := period; i < period+bulk; i++ {
		bulkPat[i] = bulkPat[i-period]
	}
}

func fail(format string, a ...interface{}) {
	fmt.Printf("fail "+format+"\n", a...)
	os.Exit(1)
}

func listen() (net.Listener, string) {
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		fail("listen: %v", err)
	}
	return l, l.Addr().String()
}

// pairs connects n clients to l and accepts them.
func pairs(l net.Listener, addr string, n int) (cl, sv []*net.TCPConn) {
	for i := 0; i < n; i++ {
		c, err := net.Dial("tcp4", addr)
		if err != nil {
			fail("dial: %v", err)
		}
		s, err := l.Accept()
		if err != nil {
			fail("accept: %v", err)
		}
		cl = append(cl, c.(*net.TCPConn))
		sv = append(sv, s.(*net.TCPConn))
	}
	return
}

func msgOK(p []byte, seq uint64) bool {
	return binary.LittleEndian.Uint64(p) == seq && bytes.Equal(p[8:], msgPat[8:len(p)])
}

func bulkOK(p []byte, off uint64) bool {
	for len(p) > 0 {
		n := len(p)
		if n > bulk {
			n = bulk
		}
		o := int(off % period)
		if !bytes.Equal(p[:n], bulkPat[o:o+n]) {
			return false
		}
		p, off = p[n:], off+uint64(n)
	}
	return true
}

type flow struct {
	t0, t1                         time.Time
	sent, sentBytes, got, gotBytes uint64
	err                            error
}

func stream(n, size int, framed bool, dur time.Duration) {
	l, addr := listen()
	cl, sv := pairs(l, addr, n)
	f := make([]flow, n)
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(2)
		go func(c *net.TCPConn, f *flow) { // receiver
			defer wg.Done()
			if framed {
				r := bufio.NewReaderSize(c, rdBuf)
				var hdr [4]byte
				body := make([]byte, size)
				for {
					if _, err := io.ReadFull(r, hdr[:]); err != nil {
						f.t1 = time.Now()
						if err != io.EOF {
							f.err = err
						}
						return
					}
					if int(binary.BigEndian.Uint32(hdr[:])) != size {
						f.err = errors.New("a wrong length")
						return
					}
					if _, err := io.ReadFull(r, body); err != nil {
						f.err = err
						return
					}
					if f.err == nil && !msgOK(body, f.got) {
						f.err = errors.New("a wrong message")
					}
					f.got++
					f.gotBytes += uint64(size)
				}
			}
			buf := make([]byte, rdBuf)
			for {
				k, err := c.Read(buf)
				if k > 0 {
					if f.err == nil && !bulkOK(buf[:k], f.gotBytes) {
						f.err = errors.New("a wrong byte")
					}
					f.got++
					f.gotBytes += uint64(k)
				}
				if err != nil {
					f.t1 = time.Now()
					if err != io.EOF {
						f.err = err
					}
					return
				}
			}
		}(sv[i], &f[i])
		go func(c *net.TCPConn, f *flow) { // sender
			defer wg.Done()
			buf := make([]byte, 4+size)
			binary.BigEndian.PutUint32(buf, uint32(size))
			copy(buf[4:], msgPat[:size])
			f.t0 = time.Now()
			end := f.t0.Add(dur)
			var k, off uint64
			for ; ; k++ {
				if k&63 == 0 && !time.Now().Before(end) {
					break
				}
				var err error
				if framed {
					binary.LittleEndian.PutUint64(buf[4:], k)
					_, err = c.Write(buf)
				} else {
					o := int(off % period)
					_, err = c.Write(bulkPat[o : o+size])
				}
				if err != nil {
					f.err = err
					break
				}
				off += uint64(size)
			}
			f.sent, f.sentBytes = k, off
			c.CloseWrite()
		}(cl[i], &f[i])
	}
	wg.Wait()
	var t0, t1 time.Time
	var msgs, byts, smsgs uint64
	sent, got := make([]uint64, n), make([]uint64, n)
	for i := range f {
		if f[i].err != nil {
			fail("connection %d: %v", i, f[i].err)
		}
		if t0.IsZero() || f[i].t0.Before(t0) {
			t0 = f[i].t0
		}
		if f[i].t1.After(t1) {
			t1 = f[i].t1
		}
		msgs += f[i].got
		byts += f[i].gotBytes
		smsgs += f[i].sent
		sent[i], got[i] = f[i].sentBytes, f[i].gotBytes
	}
	sort.Slice(sent, func(a, b int) bool { return sent[a] < sent[b] })
	sort.Slice(got, func(a, b int) bool { return got[a] < got[b] })
	for i := range sent {
		if sent[i] != got[i] {
			fail("a sender sent %d B, its receiver got %d B", sent[i], got[i])
		}
	}
	if framed && smsgs != msgs {
		fail("%d messages sent, %d received", smsgs, msgs)
	}
	for i := 0; i < n; i++ {
		cl[i].Close()
		sv[i].Close()
	}
	l.Close()
	fmt.Printf("ok %d %d %.6f 0 0\n", msgs, byts, t1.Sub(t0).Seconds())
}

func rr(n int, dur time.Duration) {
	l, addr := listen()
	cl, sv := pairs(l, addr, n)
	type client struct {
		t0, t1 time.Time
		trips  uint64
		lat    []float64
		err    error
	}
	cs := make([]client, n)
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(2)
		go func(c *net.TCPConn) { // echo
			defer wg.Done()
			r := bufio.NewReaderSize(c, rdBuf)
			buf := make([]byte, 4+bulk)
			for {
				if _, err := io.ReadFull(r, buf[:4]); err != nil {
					break
				}
				k := int(binary.BigEndian.Uint32(buf))
				if k > bulk {
					break
				}
				if _, err := io.ReadFull(r, buf[4:4+k]); err != nil {
					break
				}
				if _, err := c.Write(buf[:4+k]); err != nil {
					break
				}
			}
			c.CloseWrite()
		}(sv[i])
		go func(c *net.TCPConn, x *client) {
			defer wg.Done()
			r := bufio.NewReaderSize(c, rdBuf)
			buf := make([]byte, 4+rrSize)
			in := make([]byte, 4+rrSize)
			binary.BigEndian.PutUint32(buf, rrSize)
			copy(buf[4:], msgPat[:rrSize])
			x.t0 = time.Now()
			end := x.t0.Add(dur)
			t := x.t0
			for t.Before(end) {
				binary.LittleEndian.PutUint64(buf[4:], x.trips)
				if _, err := c.Write(buf); err != nil {
					x.err = err
					break
				}
				if _, err := io.ReadFull(r, in); err != nil {
					x.err = err
					break
				}
				if binary.BigEndian.Uint32(in) != rrSize || !msgOK(in[4:], x.trips) {
					x.err = errors.New("a wrong reply")
					break
				}
				t2 := time.Now()
				x.lat = append(x.lat, float64(t2.Sub(t).Nanoseconds())/1e3)
				x.trips++
				t = t2
			}
			x.t1 = t
			c.CloseWrite()
			if x.err == nil {
				if _, err := r.ReadByte(); err != io.EOF {
					x.err = errors.New("no clean end")
				}
			}
		}(cl[i], &cs[i])
	}
	wg.Wait()
	var t0, t1 time.Time
	var trips uint64
	var lat []float64
	for i := range cs {
		if cs[i].err != nil {
			fail("client %d: %v", i, cs[i].err)
		}
		if t0.IsZero() || cs[i].t0.Before(t0) {
			t0 = cs[i].t0
		}
		if cs[i].t1.After(t1) {
			t1 = cs[i].t1
		}
		trips += cs[i].trips
		lat = append(lat, cs[i].lat...)
	}
	sort.Float64s(lat)
	var p50, p99 float64
	if len(lat) > 0 {
		p50, p99 = lat[len(lat)/2], lat[len(lat)*99/100]
	}
	for i := 0; i < n; i++ {
		cl[i].Close()
		sv[i].Close()
	}
	l.Close()
	fmt.Printf("ok %d %d %.6f %.1f %.1f\n", trips, trips*rrSize, t1.Sub(t0).Seconds(), p50, p99)
}

func setup(n int, dur time.Duration) {
	l, addr := listen()
	var accepted, closed int64
	var srvErr atomic.Value
	var swg sync.WaitGroup
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return // closed
			}
			atomic.AddInt64(&accepted, 1)
			swg.Add(1)
			go func(c net.Conn) {
				defer swg.Done()
				var b [64]byte
				for {
					if _, err := c.Read(b[:]); err != nil {
						if err != io.EOF {
							srvErr.Store(err)
						}
						break
					}
				}
				c.Close()
				atomic.AddInt64(&closed, 1)
			}(c)
		}
	}()
	type client struct {
		t0, t1 time.Time
		conns  int64
		err    error
	}
	cs := make([]client, n)
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(x *client) {
			defer wg.Done()
			x.t0 = time.Now()
			end := x.t0.Add(dur)
			for x.t1 = time.Now(); x.t1.Before(end); x.t1 = time.Now() {
				c, err := net.Dial("tcp4", addr)
				if err != nil {
					x.err = err
					return
				}
				tc := c.(*net.TCPConn)
				tc.CloseWrite()
				var b [1]byte
				if _, err := tc.Read(b[:]); err != io.EOF {
					x.err = fmt.Errorf("no clean end: %v", err)
					return
				}
				tc.Close()
				x.conns++
			}
		}(&cs[i])
	}
	wg.Wait()
	var t0, t1 time.Time
	var conns int64
	for i := range cs {
		if cs[i].err != nil {
			fail("client %d: %v", i, cs[i].err)
		}
		if t0.IsZero() || cs[i].t0.Before(t0) {
			t0 = cs[i].t0
		}
		if cs[i].t1.After(t1) {
			t1 = cs[i].t1
		}
		conns += cs[i].conns
	}
	for i := 0; i < 10000 && atomic.LoadInt64(&closed) < conns; i++ {
		time.Sleep(time.Millisecond)
	}
	l.Close()
	swg.Wait()
	if e := srvErr.Load(); e != nil {
		fail("server: %v", e)
	}
	if accepted != conns || closed != conns {
		fail("%d connections, the server accepted %d, closed %d", conns, accepted, closed)
	}
	fmt.Printf("ok %d 0 %.6f 0 0\n", conns, t1.Sub(t0).Seconds())
}

func main() {
	cas := flag.String("case", "stream", "stream, bulk, rr or setup")
	n := flag.Int("conns", 1, "connections (setup: clients)")
	size := flag.Int("size", 64, "message size")
	secs := flag.Float64("dur", 1, "seconds")
	framed := flag.Bool("framed", true, "4-byte big-endian length before each message")
	flag.Parse()
	if *size < 8 || *size > bulk {
		*size = bulk
	}
	dur := time.Duration(*secs * float64(time.Second))
	switch *cas {
	case "stream", "bulk":
		stream(*n, *size, *framed && *cas == "stream", dur)
	case "rr":
		rr(*n, dur)
	case "setup":
		setup(*n, dur)
	default:
		fail("unknown case %s", *cas)
	}
}
