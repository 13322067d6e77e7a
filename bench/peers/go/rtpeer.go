// rtpeer: the runtime workloads of bench/rt_micro written the way Go does
// them (goroutines and channels), to be measured in the same bench/run.
// Every workload checks its own result. Output: one CSV line per workload,
//   workload,variant,value,unit
// Usage: rtpeer [-quick]   (GOMAXPROCS sets the number of threads)
package main

import (
	"flag"
	"fmt"
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
}
