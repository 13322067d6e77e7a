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
    skynet(),
    chameneos(100, 200000 * K),
    big(120, 2000 * K),
    fj_create(100000 * K),
    fj_throughput(60, 10000 * K).

fail(What) ->
    io:format(standard_error, "rtpeer: ~s~n", [What]),
    halt(1).

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

%% chameneos: the mall pairs the creatures' requests and tells each of a
%% pair the other's colour and id; after the meetings it answers every
%% request with stop and collects the creatures' counts.
complement(C, C) -> C;
complement(A, B) -> 3 - A - B.

creature(Mall, Colour, Id, Met, Self) ->
    Mall ! {meet, self(), Colour, Id},
    receive
        {met, C, I} ->
            S = case I of Id -> Self + 1; _ -> Self end,
            creature(Mall, complement(Colour, C), Id, Met + 1, S);
        stop ->
            Mall ! {count, Met, Self}
    end.

mall(0, Creatures, Main) -> mall_stop(Creatures, Main, 0, 0);
mall(Left, Creatures, Main) ->
    receive
        {meet, A, CA, IA} ->
            receive
                {meet, B, CB, IB} ->
                    A ! {met, CB, IB},
                    B ! {met, CA, IA},
                    mall(Left - 1, Creatures, Main)
            end
    end.

mall_stop(0, Main, Met, Self) -> Main ! {chameneos, Met, Self};
mall_stop(Creatures, Main, Met, Self) ->
    receive
        {meet, P, _, _} -> P ! stop, mall_stop(Creatures, Main, Met, Self);
        {count, M, S} -> mall_stop(Creatures - 1, Main, Met + M, Self + S)
    end.

chameneos(Creatures, Meetings) ->
    Main = self(),
    T0 = now_us(),
    Mall = spawn(fun() -> mall(Meetings, Creatures, Main) end),
    [spawn(fun() -> creature(Mall, I rem 3, I, 0, 0) end) || I <- lists:seq(0, Creatures - 1)],
    receive {chameneos, Met, Self} -> ok end,
    case {Met, Self} of
        {M, 0} when M =:= 2 * Meetings -> ok;
        _ -> fail("chameneos: the creatures' counts do not add up to twice the meetings")
    end,
    out("chameneos", Meetings / ((now_us() - T0) / 1.0e6), "meetings/s").

%% big: each worker pings random workers (itself included) and answers
%% their pings until its own pings are answered; then it tells the sink (the
%% main) and goes on answering until stopped.
big_worker(Ws, Sink, Pings, Sent, Answered) ->
    receive
        {ping, From} ->
            From ! pong,
            big_worker(Ws, Sink, Pings, Sent, Answered + 1);
        pong when Sent < Pings ->
            big_ping(Ws),
            big_worker(Ws, Sink, Pings, Sent + 1, Answered);
        pong ->
            Sink ! {big_done, Sent},
            big_worker(Ws, Sink, Pings, Sent, Answered);
        stop ->
            Sink ! {big_count, Answered}
    end.

big_ping(Ws) -> element(rand:uniform(tuple_size(Ws)), Ws) ! {ping, self()}.

big(Workers, Pings) ->
    Main = self(),
    Ps = [spawn(fun() ->
                        rand:seed(exsss, {I, 7, 11}),
                        receive {go, Ws} -> big_ping(Ws), big_worker(Ws, Main, Pings, 1, 0) end
                end) || I <- lists:seq(1, Workers)],
    T0 = now_us(),
    Ws = list_to_tuple(Ps),
    [P ! {go, Ws} || P <- Ps],
    [receive {big_done, Pings} -> ok; {big_done, _} -> fail("big: a worker did not send its pings") end
     || _ <- Ps],
    T1 = now_us(),
    [P ! stop || P <- Ps],
    case lists:sum([receive {big_count, N} -> N end || _ <- Ps]) of
        A when A =:= Workers * Pings -> ok;
        _ -> fail("big: not all pings were answered")
    end,
    out("big", 2 * Workers * Pings / ((T1 - T0) / 1.0e6), "msgs/s").

%% fork-join create: a process per message, which hands it to a sink and
%% ends; the sink (off-heap queue: it may have up to N waiting) sums them.
fj_sink(0, Sum, Main) -> Main ! {fj_sum, Sum};
fj_sink(N, Sum, Main) -> receive {fj_done, I} -> fj_sink(N - 1, Sum + I, Main) end.

fj_spawn(N, N, _) -> ok;
fj_spawn(I, N, Sink) ->
    P = spawn(fun() -> receive V -> Sink ! {fj_done, V} end end),
    P ! I,
    fj_spawn(I + 1, N, Sink).

fj_create(N) ->
    Main = self(),
    T0 = now_us(),
    Sink = spawn_opt(fun() -> fj_sink(N, 0, Main) end, [{message_queue_data, off_heap}]),
    fj_spawn(0, N, Sink),
    receive {fj_sum, S} -> ok end,
    case S =:= N * (N - 1) div 2 of
        true -> ok;
        false -> fail("fork-join create: wrong sum of the indices")
    end,
    out("fork-join create", (now_us() - T0) * 1000 / N, "ns each").

%% fork-join throughput: one sender, round robin over the actors (off-heap
%% queues: the sender may run far ahead); each checks the order.
fjt_actor(Per, Per, Main, Ok) -> Main ! {fjt_done, Ok};
fjt_actor(I, Per, Main, Ok) -> receive V -> fjt_actor(I + 1, Per, Main, Ok andalso V =:= I) end.

fjt_send(Per, Per, _) -> ok;
fjt_send(I, Per, As) ->
    lists:foreach(fun(A) -> A ! I end, As),
    fjt_send(I + 1, Per, As).

fj_throughput(Actors, Per) ->
    Main = self(),
    As = [spawn_opt(fun() -> fjt_actor(0, Per, Main, true) end, [{message_queue_data, off_heap}])
          || _ <- lists:seq(1, Actors)],
    T0 = now_us(),
    fjt_send(0, Per, As),
    case lists:all(fun(Ok) -> Ok end, [receive {fjt_done, Ok} -> Ok end || _ <- As]) of
        true -> ok;
        false -> fail("fork-join throughput: an actor got its messages out of order")
    end,
    out("fork-join throughput", Actors * Per / ((now_us() - T0) / 1.0e6), "msgs/s").
