// rtpeer: the runtime workloads of bench/rt_micro written the way Go does
// them (goroutines and channels), to be measured in the same bench/run.
// Every workload checks its own result. Output: one CSV line per workload,
//   workload,variant,value,unit
// Usage: rtpeer [-quick]   (GOMAXPROCS sets the number of threads)
package main

import (
	"flag"
	"fmt"
	"math/rand"
	"os"
	"runtime"
	"sync"
	"time"
)

var quick = flag.Bool("quick", false, "smaller sizes")

func out(workload string, value float64, unit string) {
	fmt.Printf("%s,%d sched,%.3f,%s\n", workload, runtime.GOMAXPROCS(0), value, unit)
}

func fail(what string) {
	fmt.Fprintln(os.Stderr, "rtpeer:", what)
	os.Exit(1)
}

func skynet(c chan<- int64, num, size int64) {
	if size == 1 {
		c <- num
		return
	}
	rc := make(chan int64, 10)
	step := size / 10
	for i := int64(0); i < 10; i++ {
		go skynet(rc, num+i*step, step)
	}
	var sum int64
	for i := 0; i < 10; i++ {
		sum += <-rc
	}
	c <- sum
}

func benchSkynet() {
	t0 := time.Now()
	c := make(chan int64)
	go skynet(c, 0, 1000000)
	sum := <-c
	if sum != 499999500000 {
		fail("skynet: wrong sum")
	}
	out("skynet", float64(time.Since(t0).Microseconds())/1000, "ms")
}

func benchSpawn(n int) {
	var wg sync.WaitGroup
	t0 := time.Now()
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() { wg.Done() }()
	}
	wg.Wait()
	out("spawn+exit", float64(time.Since(t0).Nanoseconds())/float64(n), "ns each")
}

func benchMemory(n int) {
	var m0, m1 runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&m0)
	block := make(chan struct{})
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() { <-block; wg.Done() }()
	}
	time.Sleep(100 * time.Millisecond)
	runtime.ReadMemStats(&m1)
	per := float64(m1.Sys-m0.Sys) / float64(n)
	close(block)
	wg.Wait()
	out("memory per process", per, "bytes")
}

func benchPingPong(n int) {
	a, b := make(chan int), make(chan int)
	go func() {
		for v := range a {
			b <- v
		}
	}()
	t0 := time.Now()
	for i := 0; i < n; i++ {
		a <- i
		if <-b != i {
			fail("ping-pong lost its ball")
		}
	}
	close(a)
	out("ping-pong", float64(n)/time.Since(t0).Seconds(), "round trips/s")
}

func benchFanIn(senders, per int) {
	c := make(chan int, 1024)
	t0 := time.Now()
	for s := 0; s < senders; s++ {
		go func() {
			for i := 0; i < per; i++ {
				c <- i
			}
		}()
	}
	for n := 0; n < senders*per; n++ {
		<-c
	}
	w := "fan-in count 1 sender"
	if senders > 1 {
		w = fmt.Sprintf("fan-in count %d senders", senders)
	}
	out(w, float64(senders*per)/time.Since(t0).Seconds(), "msgs/s")
}

func benchRing(hops int) {
	const n = 101
	chans := make([]chan int, n)
	for i := range chans {
		chans[i] = make(chan int)
	}
	done := make(chan bool)
	for i := 0; i < n; i++ {
		go func(in, next chan int) {
			for left := range in {
				if left == 0 {
					done <- true
					return
				}
				next <- left - 1
			}
		}(chans[i], chans[(i+1)%n])
	}
	t0 := time.Now()
	chans[0] <- hops
	<-done
	out("thread ring", float64(hops)/time.Since(t0).Seconds(), "hops/s")
}

// chameneos: a mall goroutine pairs the creatures' requests; each of a
// pair is told the other's colour and id on its own channel, takes the
// complement and asks again; after the meetings every request is answered
// with stop, and each creature hands in its counts.
type chReq struct {
	colour, id int
	reply      chan chRep
}

type chRep struct {
	colour, id int
	stop       bool
}

func complement(a, b int) int {
	if a == b {
		return a
	}
	return 3 - a - b
}

func benchChameneos(creatures, meetings int) {
	t0 := time.Now()
	mall := make(chan chReq, creatures)
	counts := make(chan [2]int, creatures)
	for i := 0; i < creatures; i++ {
		go func(colour, id int) {
			reply := make(chan chRep, 1)
			var met, self int
			for {
				mall <- chReq{colour, id, reply}
				r := <-reply
				if r.stop {
					break
				}
				if r.id == id {
					self++
				}
				met++
				colour = complement(colour, r.colour)
			}
			counts <- [2]int{met, self}
		}(i%3, i)
	}
	for left := meetings; left > 0; left-- {
		a, b := <-mall, <-mall
		a.reply <- chRep{b.colour, b.id, false}
		b.reply <- chRep{a.colour, a.id, false}
	}
	for i := 0; i < creatures; i++ {
		(<-mall).reply <- chRep{stop: true}
	}
	var met, self int
	for i := 0; i < creatures; i++ {
		c := <-counts
		met += c[0]
		self += c[1]
	}
	if met != 2*meetings || self != 0 {
		fail("chameneos: the creatures' counts do not add up to twice the meetings")
	}
	out("chameneos", float64(meetings)/time.Since(t0).Seconds(), "meetings/s")
}

// big: each worker pings random workers (itself included) on their
// channels and answers their pings, until it has had its pings answered;
// then it tells the sink and goes on answering. A channel holds a ping from
// every worker, its own pong and the stop: no send waits.
type bigMsg struct {
	ping bool // else a pong
	from int
}

func benchBig(workers, pings int) {
	inbox := make([]chan bigMsg, workers)
	for i := range inbox {
		inbox[i] = make(chan bigMsg, workers+2)
	}
	done, answered := make(chan int, workers), make(chan int, workers)
	stop := make(chan struct{})
	t0 := time.Now()
	for i := 0; i < workers; i++ {
		go func(id int) {
			r := rand.New(rand.NewSource(int64(id) + 1))
			sent, n := 1, 0
			inbox[r.Intn(workers)] <- bigMsg{true, id}
			for {
				select {
				case m := <-inbox[id]:
					if m.ping {
						n++
						inbox[m.from] <- bigMsg{false, id}
					} else if sent < pings {
						sent++
						inbox[r.Intn(workers)] <- bigMsg{true, id}
					} else {
						done <- sent
					}
				case <-stop:
					answered <- n
					return
				}
			}
		}(i)
	}
	for i := 0; i < workers; i++ {
		if <-done != pings {
			fail("big: a worker did not send its pings")
		}
	}
	secs := time.Since(t0).Seconds()
	close(stop)
	total := 0
	for i := 0; i < workers; i++ {
		total += <-answered
	}
	if total != workers*pings {
		fail("big: not all pings were answered")
	}
	out("big", float64(2*workers*pings)/secs, "msgs/s")
}

// fork-join create: a goroutine per message, each given its message on a
// channel of its own; it hands it to a sink and ends.
func benchFjCreate(n int) {
	t0 := time.Now()
	sink := make(chan int, 1024)
	sum := make(chan int)
	go func() {
		s := 0
		for i := 0; i < n; i++ {
			s += <-sink
		}
		sum <- s
	}()
	for i := 0; i < n; i++ {
		c := make(chan int, 1)
		go func() { sink <- <-c }()
		c <- i
	}
	if <-sum != n*(n-1)/2 {
		fail("fork-join create: wrong sum of the indices")
	}
	out("fork-join create", float64(time.Since(t0).Nanoseconds())/float64(n), "ns each")
}

// fork-join throughput: one sender, round robin over the actors' channels
// (1024 each, as fan-in's); each checks it gets its messages in order.
func benchFjThroughput(actors, per int) {
	chans := make([]chan int, actors)
	for i := range chans {
		chans[i] = make(chan int, 1024)
	}
	done := make(chan bool, actors)
	for k := 0; k < actors; k++ {
		go func(c chan int) {
			ok := true
			for i := 0; i < per; i++ {
				ok = ok && <-c == i
			}
			done <- ok
		}(chans[k])
	}
	t0 := time.Now()
	for i := 0; i < per; i++ {
		for _, c := range chans {
			c <- i
		}
	}
	for k := 0; k < actors; k++ {
		if !<-done {
			fail("fork-join throughput: an actor got its messages out of order")
		}
	}
	out("fork-join throughput", float64(actors*per)/time.Since(t0).Seconds(), "msgs/s")
}

func main() {
	flag.Parse()
	k := 10
	if *quick {
		k = 1
	}
	benchSpawn(100000 * k)
	benchMemory(20000 * k)
	benchPingPong(200000 * k)
	benchFanIn(1, 500000*k)
	benchFanIn(4, 125000*k)
	benchRing(1000000 * k)
	benchSkynet()
	benchChameneos(100, 200000*k)
	benchBig(120, 2000*k)
	benchFjCreate(100000 * k)
	benchFjThroughput(60, 10000*k)
}
