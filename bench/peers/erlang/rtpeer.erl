%% rtpeer: the runtime workloads of bench/rt_micro written the way Erlang
%% does them, to be measured in the same bench/run. Every workload checks
%% its own result. Output: one CSV line per workload,
%%   workload,variant,value,unit
%% Run: erl -noshell +S N -pa DIR -run rtpeer main [quick] -s init stop
-module(rtpeer).
-export([main/0, main/1]).

out(Workload, Value, Unit) ->
    io:format("~s,~B sched,~.3f,~s~n",
              [Workload, erlang:system_info(schedulers_online), float(Value), Unit]).

now_us() -> erlang:monotonic_time(microsecond).

%% -run with no argument (full mode) calls main/0
main() -> main([]).

main(Args) ->
    K = case Args of ["quick" | _] -> 1; _ -> 10 end,
    spawn_exit(100000 * K),
    memory(20000 * K),
    ping_pong(200000 * K),
    fan_in(1, 500000 * K),
    fan_in(4, 125000 * K),
    ring(1000000 * K),
    skynet().

spawn_exit(N) ->
    Self = self(),
    T0 = now_us(),
    [spawn(fun() -> Self ! done end) || _ <- lists:seq(1, N)],
    [receive done -> ok end || _ <- lists:seq(1, N)],
    out("spawn+exit", (now_us() - T0) * 1000 / N, "ns each").

memory(N) ->
    M0 = erlang:memory(processes),
    Pids = [spawn(fun() -> receive stop -> ok end end) || _ <- lists:seq(1, N)],
    timer:sleep(100),
    M1 = erlang:memory(processes),
    [P ! stop || P <- Pids],
    out("memory per process", (M1 - M0) / N, "bytes").

pong() -> receive {From, I} -> From ! I, pong(); stop -> ok end.
ping(_, 0) -> ok;
ping(P, I) -> P ! {self(), I}, receive I -> ping(P, I - 1) end.
ping_pong(N) ->
    P = spawn(fun pong/0),
    T0 = now_us(),
    ping(P, N),
    P ! stop,
    out("ping-pong", N / ((now_us() - T0) / 1.0e6), "round trips/s").

count(0) -> ok;
count(N) -> receive _ -> count(N - 1) end.
fan_in(Senders, Per) ->
    Self = self(),
    Counter = spawn_opt(fun() -> count(Senders * Per), Self ! counted end,
                        [{message_queue_data, off_heap}]),
    T0 = now_us(),
    [spawn(fun() -> [Counter ! x || _ <- lists:seq(1, Per)] end) || _ <- lists:seq(1, Senders)],
    receive counted -> ok end,
    W = case Senders of 1 -> "fan-in count 1 sender";
                        _ -> io_lib:format("fan-in count ~B senders", [Senders]) end,
    out(W, Senders * Per / ((now_us() - T0) / 1.0e6), "msgs/s").

ring_node(Next, Main) ->
    receive
        {set, N} -> ring_node(N, Main);
        0 -> Main ! done;
        Left -> Next ! Left - 1, ring_node(Next, Main)
    end.
ring(Hops) ->
    Self = self(),
    Nodes = [spawn(fun() -> ring_node(none, Self) end) || _ <- lists:seq(1, 101)],
    [A ! {set, B} || {A, B} <- lists:zip(Nodes, tl(Nodes) ++ [hd(Nodes)])],
    T0 = now_us(),
    hd(Nodes) ! Hops,
    receive done -> ok end,
    [exit(P, kill) || P <- Nodes],
    out("thread ring", Hops / ((now_us() - T0) / 1.0e6), "hops/s").

skynet(Parent, Num, 1) -> Parent ! Num;
skynet(Parent, Num, Size) ->
    Self = self(),
    Step = Size div 10,
    [spawn(fun() -> skynet(Self, Num + I * Step, Step) end) || I <- lists:seq(0, 9)],
    Parent ! lists:sum([receive V -> V end || _ <- lists:seq(1, 10)]).
skynet() ->
    Self = self(),
    T0 = now_us(),
    spawn(fun() -> skynet(Self, 0, 1000000) end),
    Sum = receive S -> S end,
    case Sum of 499999500000 -> ok; _ -> io:format(standard_error, "skynet: wrong sum~n", []), halt(1) end,
    out("skynet", (now_us() - T0) / 1000, "ms").
