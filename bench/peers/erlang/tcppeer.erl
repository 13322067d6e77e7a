%% tcppeer: the Erlang/OTP peer of bench/esock_tcp, the same workloads as
%% its plain C program and its Go peer (bench/peers/go/tcppeer), written the
%% way an Erlang programmer writes them with gen_tcp; run by esock_tcp once
%% per measurement:
%%
%%   erl -noshell -pa DIR -run tcppeer main CASE CONNS SIZE DUR FRAMED
%%
%% CASE: stream, bulk, rr or setup; FRAMED: true or false. Over 127.0.0.1,
%% every socket binary, {nodelay, true} (as the others), {buffer, 256 KiB}
%% (the user-level buffer: reads of up to 256 KiB, as the others' read
%% buffers; OTP's default is 1460 bytes); sndbuf and recbuf are left to the
%% kernel's autotuning, as for the other peers. The schedulers are erl's
%% default, one per CPU, as esock's runtime and Go's GOMAXPROCS.
%%
%%   stream: N connections, a sender process and a receiver process each.
%%           Framed: {packet, 4}, gen_tcp's own 4-byte big-endian length, one
%%           gen_tcp:send per message of SIZE bytes (its sequence number,
%%           little-endian, in the first 8, a fixed pattern after them);
%%           bulk: {packet, raw}, sends of SIZE bytes of the unframed pattern
%%           (byte o is pat[o rem 65521]). Each sender sends for DUR s, then
%%           shuts its side down (gen_tcp:shutdown(S, write)); each receiver,
%%           in {active, N}, checks every message (its length, the next
%%           number, the pattern) or every byte of the stream, and takes the
%%           time of its end (tcp_closed). The receivers' byte counts must
%%           equal the senders' (as a multiset: accept pairs a receiver with
%%           some sender) and, framed, the messages too.
%%   rr:     64-byte request/response over N connections, {packet, 4}: a
%%           passive client (gen_tcp:send, gen_tcp:recv) checking each reply,
%%           an echo process in {active, N} per connection; at the end the
%%           client shuts its side down and must see the echo side's end.
%%   setup:  N client processes connecting, shutting their side down,
%%           reading to the end and closing, again and again; the server a
%%           process per accepted connection, reading to the end and
%%           closing. It must have accepted and closed them all.
%%
%% It prints one line, "ok MSGS BYTES SECS P50_US P99_US" (SECS from the
%% first sender's start to the last receiver's end), or "fail WHY" and exits
%% with status 1.
-module(tcppeer).
-export([main/1]).

-define(PERIOD, 65521).      % the unframed pattern's period (a prime)
-define(BULK, 65536).
-define(BUFFER, 262144).
-define(RR_SIZE, 64).
-define(ACTIVE, 100).
-define(IDLE_MS, 15000).     % a receiver that gets nothing this long has stalled

now_us() -> erlang:monotonic_time(microsecond).

main([Case, N, Size, Dur, Framed]) ->
    Us = round(list_to_float(Dur) * 1.0e6),
    Args = {Case, list_to_integer(N), list_to_integer(Size), Us, Framed =:= "true"},
    %% the workload in a process of its own, so that a crash is a "fail"
    %% line, and one that hangs is one too
    {Pid, Ref} = spawn_monitor(fun() -> exit({result, workload(Args)}) end),
    R = receive
            {'DOWN', Ref, process, Pid, {result, X}} -> X;
            {'DOWN', Ref, process, Pid, Why} -> {fail, Why}
        after Us div 1000 + 180000 -> {fail, {no_result_within_ms, Us div 1000 + 180000}}
        end,
    case R of
        {ok, Msgs, Bytes, Secs, P50, P99} ->
            io:format("ok ~B ~B ~.6f ~.1f ~.1f~n", [Msgs, Bytes, Secs, float(P50), float(P99)]),
            halt(0);
        {fail, F} ->
            io:format("fail ~s~n", [lists:flatten(io_lib:format("~0P", [F, 12]))]),
            halt(1)
    end;
main(Args) ->
    io:format("fail usage: tcppeer CASE CONNS SIZE DUR FRAMED, not ~p~n", [Args]),
    halt(1).

workload({Case, N, Size0, Dur, Framed}) when Case =:= "stream"; Case =:= "bulk" ->
    Size = if Size0 < 8; Size0 > ?BULK -> ?BULK; true -> Size0 end,
    stream(N, Size, Framed andalso Case =:= "stream", Dur);
workload({"rr", N, _, Dur, _}) -> rr(N, Dur);
workload({"setup", N, _, Dur, _}) -> setup(N, Dur);
workload({Case, _, _, _, _}) -> {fail, {unknown_case, Case}}.

%% ---------------------------------------------------------------- patterns

%% A framed message's payload after its sequence number: byte i is i*7+1.
msg_tail(Size) ->
    << <<((I * 7 + 1) band 255)>> || I <- lists:seq(8, Size - 1) >>.

%% ?PERIOD + ?BULK bytes: byte o of an unframed stream is byte (o rem
%% ?PERIOD) of it, from a xorshift32 generator as in the other peers.
bulk_pattern() ->
    B = list_to_binary(xorshift(2463534242, ?PERIOD, [])),
    binary:part(<<B/binary, B/binary, B/binary>>, 0, ?PERIOD + ?BULK).

xorshift(_, 0, Acc) -> lists:reverse(Acc);
xorshift(X0, N, Acc) ->
    X1 = X0 bxor ((X0 bsl 13) band 16#FFFFFFFF),
    X2 = X1 bxor (X1 bsr 17),
    X3 = X2 bxor ((X2 bsl 5) band 16#FFFFFFFF),
    xorshift(X3, N - 1, [X3 band 255 | Acc]).

%% Are Data the bytes of the unframed stream from offset Off on?
bulk_ok(<<>>, _, _) -> true;
bulk_ok(Data, Off, Pat) ->
    N = min(byte_size(Data), ?BULK),
    <<Chunk:N/binary, Rest/binary>> = Data,
    Chunk =:= binary:part(Pat, Off rem ?PERIOD, N) andalso bulk_ok(Rest, Off + N, Pat).

%% ----------------------------------------------------------------- sockets

opts(Packet) ->
    [binary, {packet, Packet}, {active, false}, {nodelay, true}, {buffer, ?BUFFER}].

listen(Packet) ->
    {ok, L} = gen_tcp:listen(0, [{ip, {127, 0, 0, 1}}, {backlog, 1024}, {reuseaddr, true}
                                 | opts(Packet)]),
    {ok, Port} = inet:port(L),
    {L, Port}.

%% N connections to L, each as {client socket, server socket}; this process
%% owns them all until it hands the server sides over.
pairs(L, Port, N, Packet) ->
    [begin
         {ok, C} = gen_tcp:connect({127, 0, 0, 1}, Port, opts(Packet), 10000),
         {ok, S} = gen_tcp:accept(L, 10000),
         {C, S}
     end || _ <- lists:seq(1, N)].

%% Give socket S to a new process running Fun(S) once it owns it.
hand_over(S, Fun) ->
    P = spawn_link(fun() -> receive {go, S} -> Fun(S) end end),
    ok = gen_tcp:controlling_process(S, P),
    P ! {go, S},
    P.

close_all(L, Pairs) ->
    [begin gen_tcp:close(C), gen_tcp:close(S) end || {C, S} <- Pairs],
    gen_tcp:close(L).

%% ------------------------------------------------------------------ stream

stream(N, Size, Framed, Dur) ->
    Self = self(),
    Packet = case Framed of true -> 4; false -> raw end,
    {L, Port} = listen(Packet),
    Pairs = pairs(L, Port, N, Packet),
    Pat = case Framed of true -> msg_tail(Size); false -> bulk_pattern() end,
    Rcvs = [hand_over(S, fun(Sk) -> receiver(Self, Sk, Size, Framed, Pat) end)
            || {_, S} <- Pairs],
    %% the senders do not own their sockets: this process keeps them open
    %% until every receiver has seen its end
    Snds = [spawn_link(fun() -> sender(Self, C, Size, Framed, Pat, Dur) end) || {C, _} <- Pairs],
    Sent = [receive {sent, P, Msgs, Bytes, T0} -> {Msgs, Bytes, T0}
            after Dur div 1000 + 60000 -> exit(a_sender_hangs)
            end || P <- Snds],
    Got = [receive {got, P, Msgs, Bytes, T1} -> {Msgs, Bytes, T1}
           after 60000 -> exit({a_receiver_hangs, {sent, Sent}})
           end || P <- Rcvs],
    close_all(L, Pairs),
    SentBytes = lists:sort([B || {_, B, _} <- Sent]),
    GotBytes = lists:sort([B || {_, B, _} <- Got]),
    SentMsgs = lists:sum([M || {M, _, _} <- Sent]),
    GotMsgs = lists:sum([M || {M, _, _} <- Got]),
    T0 = lists:min([T || {_, _, T} <- Sent]),
    T1 = lists:max([T || {_, _, T} <- Got]),
    if
        SentBytes =/= GotBytes -> {fail, {bytes_sent, SentBytes, received, GotBytes}};
        Framed andalso SentMsgs =/= GotMsgs -> {fail, {msgs_sent, SentMsgs, received, GotMsgs}};
        true -> {ok, GotMsgs, lists:sum(GotBytes), (T1 - T0) / 1.0e6, 0, 0}
    end.

sender(Coord, S, Size, Framed, Pat, Dur) ->
    T0 = now_us(),
    K = send_loop(S, Size, Framed, Pat, T0 + Dur, 0),
    ok = gen_tcp:shutdown(S, write),
    Coord ! {sent, self(), K, K * Size, T0}.

%% K messages sent so far; the clock is read every 64.
send_loop(S, Size, Framed, Pat, End, K) when K band 63 =:= 0 ->
    case now_us() >= End of
        true -> K;
        false -> send_one(S, Size, Framed, Pat, End, K)
    end;
send_loop(S, Size, Framed, Pat, End, K) -> send_one(S, Size, Framed, Pat, End, K).

send_one(S, Size, Framed, Pat, End, K) ->
    Data = case Framed of
               true -> [<<K:64/little>>, Pat];
               false -> binary:part(Pat, (K * Size) rem ?PERIOD, Size)
           end,
    case gen_tcp:send(S, Data) of
        ok -> send_loop(S, Size, Framed, Pat, End, K + 1);
        {error, Why} -> exit({send, Why, {sent, K}})
    end.

receiver(Coord, S, Size, Framed, Pat) ->
    ok = inet:setopts(S, [{active, ?ACTIVE}]),
    {Msgs, Bytes} = case Framed of
                        true -> recv_framed(S, Size, Pat, 0);
                        false -> recv_raw(S, Pat, 0, 0)
                    end,
    Coord ! {got, self(), Msgs, Bytes, now_us()}.

recv_framed(S, Size, Tail, K) ->
    receive
        {tcp, S, <<Seq:64/little, Rest/binary>>} when Seq =:= K, Rest =:= Tail ->
            recv_framed(S, Size, Tail, K + 1);
        {tcp, S, Msg} -> exit({a_wrong_message, {number, K}, {length, byte_size(Msg)}});
        {tcp_passive, S} ->
            ok = inet:setopts(S, [{active, ?ACTIVE}]),
            recv_framed(S, Size, Tail, K);
        {tcp_closed, S} -> {K, K * Size};
        {tcp_error, S, Why} -> exit({recv, Why, {got, K}})
    after ?IDLE_MS -> exit({receiver_got_nothing_for_ms, ?IDLE_MS, {got, K}})
    end.

%% Reads (not messages) and bytes.
recv_raw(S, Pat, Reads, Off) ->
    receive
        {tcp, S, Data} ->
            bulk_ok(Data, Off, Pat) orelse exit({a_wrong_byte, {after_bytes, Off}}),
            recv_raw(S, Pat, Reads + 1, Off + byte_size(Data));
        {tcp_passive, S} ->
            ok = inet:setopts(S, [{active, ?ACTIVE}]),
            recv_raw(S, Pat, Reads, Off);
        {tcp_closed, S} -> {Reads, Off};
        {tcp_error, S, Why} -> exit({recv, Why, {got_bytes, Off}})
    after ?IDLE_MS -> exit({receiver_got_nothing_for_ms, ?IDLE_MS, {got_bytes, Off}})
    end.

%% ---------------------------------------------------------------------- rr

rr(N, Dur) ->
    Self = self(),
    {L, Port} = listen(4),
    Pairs = pairs(L, Port, N, 4),
    Tail = msg_tail(?RR_SIZE),
    [hand_over(S, fun echo/1) || {_, S} <- Pairs],
    Cls = [hand_over(C, fun(Sk) -> rr_client(Self, Sk, Tail, Dur) end) || {C, _} <- Pairs],
    Res = [receive {rr, P, Trips, T0, T1, Lat} -> {Trips, T0, T1, Lat}
           after Dur div 1000 + 60000 -> exit(a_client_hangs)
           end || P <- Cls],
    gen_tcp:close(L),
    Trips = lists:sum([K || {K, _, _, _} <- Res]),
    T0 = lists:min([T || {_, T, _, _} <- Res]),
    T1 = lists:max([T || {_, _, T, _} <- Res]),
    Sorted = list_to_tuple(lists:sort(lists:append([Lat || {_, _, _, Lat} <- Res]))),
    {P50, P99} = case tuple_size(Sorted) of
                     0 -> {0, 0};
                     Len -> {element(Len div 2 + 1, Sorted), element(Len * 99 div 100 + 1, Sorted)}
                 end,
    {ok, Trips, Trips * ?RR_SIZE, (T1 - T0) / 1.0e6, P50, P99}.

rr_client(Coord, S, Tail, Dur) ->
    T0 = now_us(),
    {Trips, T1, Lat} = rr_loop(S, Tail, T0, T0 + Dur, 0, []),
    %% a graceful end both ways
    ok = gen_tcp:shutdown(S, write),
    case gen_tcp:recv(S, 0, 10000) of
        {error, closed} -> ok;
        Other -> exit({no_clean_end, Other})
    end,
    gen_tcp:close(S),
    Coord ! {rr, self(), Trips, T0, T1, Lat}.

rr_loop(_, _, T, End, K, Lat) when T >= End -> {K, T, Lat};
rr_loop(S, Tail, T, End, K, Lat) ->
    ok = gen_tcp:send(S, [<<K:64/little>>, Tail]),
    case gen_tcp:recv(S, 0, 10000) of
        {ok, <<Seq:64/little, Rest/binary>>} when Seq =:= K, Rest =:= Tail -> ok;
        {ok, Wrong} -> exit({a_wrong_reply, {trip, K}, {length, byte_size(Wrong)}});
        {error, Why} -> exit({no_reply, Why, {trip, K}})
    end,
    T2 = now_us(),
    rr_loop(S, Tail, T2, End, K + 1, [T2 - T | Lat]).

echo(S) ->
    ok = inet:setopts(S, [{active, ?ACTIVE}]),
    echo_loop(S).

echo_loop(S) ->
    receive
        {tcp, S, Msg} ->
            case gen_tcp:send(S, Msg) of
                ok -> echo_loop(S);
                {error, _} -> gen_tcp:close(S)
            end;
        {tcp_passive, S} ->
            ok = inet:setopts(S, [{active, ?ACTIVE}]),
            echo_loop(S);
        %% the client's end: gen_tcp closes the socket (exit_on_close), and
        %% the client sees this side's end
        {tcp_closed, S} -> ok;
        {tcp_error, S, _} -> gen_tcp:close(S)
    end.

%% ------------------------------------------------------------------- setup

setup(N, Dur) ->
    Self = self(),
    {L, Port} = listen(raw),
    Counter = spawn_link(fun() -> counter(0, 0, []) end),
    Acc = spawn_link(fun() -> setup_accept(L, Counter) end),
    Cls = [spawn_link(fun() -> setup_client(Self, Port, Dur) end) || _ <- lists:seq(1, N)],
    Res = [receive {made, P, Conns, T0, T1} -> {Conns, T0, T1}
           after Dur div 1000 + 60000 -> exit(a_client_hangs)
           end || P <- Cls],
    Conns = lists:sum([C || {C, _, _} <- Res]),
    T0 = lists:min([T || {_, T, _} <- Res]),
    T1 = lists:max([T || {_, _, T} <- Res]),
    Counter ! {report, self(), Conns},
    {Accepted, Closed, Errors} = receive {counts, A, C, E} -> {A, C, E} end,
    unlink(Acc),
    gen_tcp:close(L),
    if
        Errors =/= [] -> {fail, {server, hd(Errors)}};
        Accepted =/= Conns; Closed =/= Conns ->
            {fail, {connections, Conns, server_accepted, Accepted, closed, Closed}};
        true -> {ok, Conns, 0, (T1 - T0) / 1.0e6, 0, 0}
    end.

setup_accept(L, Counter) ->
    case gen_tcp:accept(L) of
        {ok, S} ->
            Counter ! accepted,
            hand_over(S, fun(Sk) -> setup_conn(Sk, Counter) end),
            setup_accept(L, Counter);
        {error, closed} -> ok
    end.

%% Read to the client's end, then close.
setup_conn(S, Counter) ->
    case gen_tcp:recv(S, 0) of
        {ok, _} -> setup_conn(S, Counter);
        {error, closed} -> gen_tcp:close(S), Counter ! closed;
        {error, Why} -> gen_tcp:close(S), Counter ! {error, Why}
    end.

setup_client(Coord, Port, Dur) ->
    T0 = now_us(),
    {K, T1} = setup_loop(Port, T0 + Dur, 0),
    Coord ! {made, self(), K, T0, T1}.

setup_loop(Port, End, K) ->
    case now_us() of
        T when T >= End -> {K, T};
        _ ->
            {ok, S} = gen_tcp:connect({127, 0, 0, 1}, Port, opts(raw), 10000),
            ok = gen_tcp:shutdown(S, write),
            case gen_tcp:recv(S, 0, 10000) of
                {error, closed} -> ok;
                Other -> exit({no_clean_end, Other, {connection, K + 1}})
            end,
            gen_tcp:close(S),
            setup_loop(Port, End, K + 1)
    end.

%% Connections accepted and closed by the server side, and its errors; at
%% {report, From, Made}, the counts once every one of them has closed (or
%% after 10 s).
counter(A, C, E) ->
    receive
        accepted -> counter(A + 1, C, E);
        closed -> counter(A, C + 1, E);
        {error, Why} -> counter(A, C + 1, [Why | E]);
        {report, From, Made} -> report(From, Made, A, C, E)
    end.

report(From, Made, A, C, E) when C >= Made ->
    From ! {counts, A, C, E};
report(From, Made, A, C, E) ->
    receive
        accepted -> report(From, Made, A + 1, C, E);
        closed -> report(From, Made, A, C + 1, E);
        {error, Why} -> report(From, Made, A, C + 1, [Why | E])
    after 10000 -> From ! {counts, A, C, E}
    end.
