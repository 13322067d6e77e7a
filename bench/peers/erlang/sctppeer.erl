%% sctppeer: the SCTP workloads of bench/esock_sctp written the way an
%% Erlang/OTP programmer does them with gen_sctp, to be measured in the same
%% run (and the same test VM) as esock and the plain libsctp program.
%%
%% Every socket: {sctp_nodelay, true}, {sndbuf, 1 MiB}, {recbuf, 1 MiB} (the
%% sizes the other peers ask for; the kernel caps them at wmem_max/rmem_max),
%% binary, {active, N} re-armed on sctp_passive. A server is one one-to-many
%% socket (gen_sctp:listen) whose process sees every association's messages
%% and keeps their counts in a map keyed by assoc_id, as in the gen_sctp
%% documentation; each client association is its own process with its own
%% socket, like esock's sender processes with an endpoint each.
%%
%% Every message is checked as esock_sctp checks its own: a data message must
%% be `Size` bytes on stream 0 with the data ppid; the sender's end marker
%% (another ppid) carries how many messages and bytes it sent, and the
%% receiver must have exactly those. A request/response reply must equal the
%% request, byte for byte.
%%
%% Driven over stdin/stdout by bench/esock_sctp, one command a line:
%%   stream N SIZE DUR   one-way streaming over N associations for DUR s
%%   rr SIZE DUR         request/response over one association
%%   setup DUR           associations set up and shut down, one at a time
%%   ping                answers ok (the driver's check that erl is up)
%%   quit
%% Answer, one line: "ok MSGS BYTES SECS P50_US P99_US" (MSGS: messages,
%% round trips or associations; SECS: the time they took) or "fail WHY".
%% Run: erl -noshell -pa DIR -run sctppeer main -s init stop
-module(sctppeer).
-export([main/0, main/1]).

-include_lib("kernel/include/inet_sctp.hrl").

-define(PPID_DATA, 51).
-define(PPID_END, 52).
-define(PPID_PING, 53).
-define(ACTIVE, 100).
-define(IDLE_MS, 15000).  % a receiver that gets nothing this long has stalled

now_us() -> erlang:monotonic_time(microsecond).

opts() ->
    [binary, {ip, {127, 0, 0, 1}}, {active, ?ACTIVE}, {sctp_nodelay, true},
     {sndbuf, 1 bsl 20}, {recbuf, 1 bsl 20}, {buffer, 65536 + 4096},
     {sctp_initmsg, #sctp_initmsg{num_ostreams = 10, max_instreams = 10}}].

main() -> main([]).
main(_) ->
    io:setopts(standard_io, [binary]),
    loop().

loop() ->
    case io:get_line("") of
        eof -> ok;
        {error, _} -> ok;
        Line ->
            case string:lexemes(string:trim(binary_to_list(Line)), " ") of
                ["quit"] -> ok;
                [] -> loop();
                Cmd ->
                    reply(run(Cmd)),
                    loop()
            end
    end.

reply({ok, Msgs, Bytes, Us, P50, P99}) ->
    io:format("ok ~B ~B ~.6f ~.1f ~.1f~n", [Msgs, Bytes, Us / 1.0e6, float(P50), float(P99)]);
reply({fail, Why}) ->
    io:format("fail ~s~n", [lists:flatten(io_lib:format("~0p", [Why]))]).

run(Cmd) ->
    Self = self(),
    %% each workload in its own process, so a crash or a stuck socket is
    %% a "fail" line and the peer carries on
    {Pid, Ref} = spawn_monitor(fun() -> exit({result, workload(Cmd, Self)}) end),
    receive
        {'DOWN', Ref, process, Pid, {result, R}} -> R;
        {'DOWN', Ref, process, Pid, Why} -> {fail, Why}
    end.

workload(["ping"], _) -> {ok, 0, 0, 0, 0, 0};
workload(["stream", N, Size, Dur], Coord) ->
    stream(list_to_integer(N), list_to_integer(Size), dur_us(Dur), Coord);
workload(["rr", Size, Dur], _) -> rr(list_to_integer(Size), dur_us(Dur));
workload(["setup", Dur], _) -> setup(dur_us(Dur));
workload(Cmd, _) -> {fail, {unknown_command, Cmd}}.

dur_us(S) -> round(list_to_float(S) * 1.0e6).

%% ---------------------------------------------------------------- stream

stream(N, Size, Dur, _Coord) ->
    Self = self(),
    Srv = spawn_link(fun() -> stream_server(Self, N, Size) end),
    Port = receive {port, Srv, P} -> P end,
    Senders = [spawn_link(fun() -> sender(Self, Port, Size, Dur) end) || _ <- lists:seq(1, N)],
    receive {peeled_off, Srv} -> ok end,
    [S ! start || S <- Senders],
    Sent = [receive {sent, S, Msgs, Bytes, T0} -> {Msgs, Bytes, T0};
                    {sender_failed, S, Why} -> exit({sender, Why})
            after Dur div 1000 + 60000 -> exit(sender_hangs)
            end || S <- Senders],
    Got = receive {got, Srv, G} -> G
          after 60000 -> exit({receiver_hangs, {sent, Sent}})
          end,
    [S ! stop || S <- Senders],
    %% each receiver against its own end marker, the totals against what
    %% was sent
    Bad = [R || {_, _, _, _, _, false} = R <- Got],
    SentMsgs = lists:sum([M || {M, _, _} <- Sent]),
    SentBytes = lists:sum([B || {_, B, _} <- Sent]),
    GotMsgs = lists:sum([M || {_, M, _, _, _, _} <- Got]),
    GotBytes = lists:sum([B || {_, _, B, _, _, _} <- Got]),
    T0 = lists:min([T || {_, _, T} <- Sent]),
    T1 = lists:max([T || {_, _, _, _, T, _} <- Got]),
    if
        Bad =/= [] -> {fail, {receivers, Bad}};
        SentMsgs =/= GotMsgs; SentBytes =/= GotBytes ->
            {fail, {sent, SentMsgs, SentBytes, received, GotMsgs, GotBytes}};
        true -> {ok, GotMsgs, GotBytes, T1 - T0, 0, 0}
    end.

%% The listening socket's process peels each new association off into a
%% socket of its own, owned by a receiver process, as OTP's diameter_sctp
%% does: with one socket for all, the associations share its receive buffer
%% (net.sctp.rcvbuf_policy 0) and 100 of them stall on retransmission
%% timeouts. The senders start once every association is peeled off
%% (stream/4): a message the kernel had begun to hand to the listening
%% socket in pieces (partial delivery, with 100 senders filling its buffer)
%% lost its first piece at the peeloff (seen with 100 x 64 KiB: a receiver
%% got a 52-byte tail), inside gen_sctp, where this program cannot see it.
stream_server(Coord, N, Size) ->
    {ok, S} = gen_sctp:open(0, opts()),
    ok = gen_sctp:listen(S, true),
    {ok, Port} = inet:port(S),
    Coord ! {port, self(), Port},
    Self = self(),
    Rcvs = accept_loop(S, N, Size, #{}),
    Coord ! {peeled_off, Self},
    R = ended(S, Rcvs, maps:size(Rcvs), []),
    Coord ! {got, Self, R},
    receive after 200 -> ok end,
    gen_sctp:close(S).

%% Accept until N associations have a receiver each. An association is
%% known by its comm_up event or by its first message, whichever comes
%% first: with many associations sending at once the listening socket's
%% buffer fills before they are peeled off, and the kernel then drops
%% events (seen: one comm_up in 100 missing).
accept_loop(_, 0, _, Rcvs) -> Rcvs;
accept_loop(S, Left, Size, Rcvs) ->
    receive
        {sctp, S, _, _, {_, #sctp_assoc_change{state = comm_up, assoc_id = A}}}
          when not is_map_key(A, Rcvs) ->
            accept_loop(S, Left - 1, Size, Rcvs#{A => peeloff(S, A, Size, none)});
        {sctp, S, _, _, {[#sctp_sndrcvinfo{assoc_id = A}], _} = M}
          when not is_map_key(A, Rcvs) ->
            accept_loop(S, Left - 1, Size, Rcvs#{A => peeloff(S, A, Size, M)});
        {sctp, S, _, _, {[#sctp_sndrcvinfo{assoc_id = A}], _} = M} ->
            maps:get(A, Rcvs) ! {forwarded, M},
            accept_loop(S, Left, Size, Rcvs);
        {sctp_passive, S} ->
            ok = inet:setopts(S, [{active, ?ACTIVE}]),
            accept_loop(S, Left, Size, Rcvs);
        {sctp, S, _, _, _} ->
            accept_loop(S, Left, Size, Rcvs)
    after 30000 -> exit({accepted_only, maps:size(Rcvs), missing, Left})
    end.

%% A receiver of its own for association A, on a socket of its own; First:
%% a message of A already taken from the listening socket, or none.
peeloff(S, A, Size, First) ->
    {ok, PS} = gen_sctp:peeloff(S, A),
    P = spawn_link(fun() -> receiver(PS, Size) end),
    ok = gen_sctp:controlling_process(PS, P),
    First =:= none orelse (P ! {forwarded, First}),
    %% the port's messages read before the peeloff reached this mailbox
    %% before its reply (signals from one port to one process stay in
    %% order): hand them over, then say so
    forward(S, A, P),
    P ! {go, self()},
    P.

%% Each receiver's counts once it has its end marker; meanwhile the pieces
%% of messages the listening socket still gets go to their receivers.
ended(_, _, 0, R) -> R;
ended(S, Rcvs, Left, R) ->
    receive
        {ended, _, Res} -> ended(S, Rcvs, Left - 1, [Res | R]);
        {sctp, S, _, _, {[#sctp_sndrcvinfo{assoc_id = A}], _} = M} when is_map_key(A, Rcvs) ->
            maps:get(A, Rcvs) ! {forwarded, M},
            ended(S, Rcvs, Left, R);
        {sctp_passive, S} ->
            ok = inet:setopts(S, [{active, ?ACTIVE}]),
            ended(S, Rcvs, Left, R);
        {sctp, S, _, _, _} -> ended(S, Rcvs, Left, R)
    after 120000 -> [{none, 0, 0, 0, 0, false} | R]
    end.

forward(S, A, P) ->
    receive
        {sctp, S, _, _, {[#sctp_sndrcvinfo{assoc_id = A}], _} = M} ->
            P ! {forwarded, M},
            forward(S, A, P)
    after 0 -> ok
    end.

%% One association's messages until its end marker, after the listener's
%% go (which follows every message it forwarded).
receiver(S, Size) ->
    Parent = receive {go, L} -> L end,
    %% a peeled-off socket starts passive, in list mode
    ok = inet:setopts(S, [binary, {active, ?ACTIVE}]),
    {G, B, X, T1, Whole} = recv_loop(S, Size, 0, 0, 0),
    Parent ! {ended, self(), {self(), G, B, X, T1, Whole}},
    receive after 120000 -> ok end.

%% Before the first message (the senders start once all associations are
%% peeled off, which can take long with 100 under emulation) a receiver
%% waits longer.
recv_loop(S, Size, G, B, X) ->
    Idle = case G of 0 -> 4 * ?IDLE_MS; _ -> ?IDLE_MS end,
    receive
        {forwarded, M} -> recv_msg(S, Size, G, B, X, M);
        {sctp, S, _, _, M} -> recv_msg(S, Size, G, B, X, M);
        {sctp_passive, S} ->
            ok = inet:setopts(S, [{active, ?ACTIVE}]),
            recv_loop(S, Size, G, B, X);
        {sctp_error, S, Why} -> exit({sctp_error, Why})
    after Idle ->
        exit({receiver_got_nothing_for_ms, Idle, {msgs, G, bytes, B}})
    end.

recv_msg(S, Size, G, B, X, {[#sctp_sndrcvinfo{ppid = ?PPID_DATA, stream = St}], Data}) ->
    Len = byte_size(Data),
    Wrong = case Len =:= Size andalso St =:= 0 of true -> 0; false -> 1 end,
    recv_loop(S, Size, G + 1, B + Len, X + Wrong);
recv_msg(_, _, G, B, X, {[#sctp_sndrcvinfo{ppid = ?PPID_END}], <<Msgs:64/native, Bytes:64/native>>}) ->
    {G, B, X, now_us(), G =:= Msgs andalso B =:= Bytes andalso X =:= 0};
recv_msg(S, Size, G, B, X, {[#sctp_sndrcvinfo{}], _}) ->
    recv_loop(S, Size, G, B, X + 1);
recv_msg(_, _, _, _, _, {_, #sctp_assoc_change{state = St}})
  when St =:= comm_lost; St =:= cant_assoc; St =:= shutdown_comp ->
    exit({association_ended, St});
recv_msg(S, Size, G, B, X, _Event) ->
    recv_loop(S, Size, G, B, X).

connect(Port) ->
    {ok, S} = gen_sctp:open(0, opts()),
    case gen_sctp:connect(S, {127, 0, 0, 1}, Port, [], 30000) of
        {ok, #sctp_assoc_change{state = comm_up, assoc_id = A}} -> {S, A};
        Other -> exit({connect, Other})
    end.

sender(Coord, Port, Size, Dur) ->
    {S, A} = connect(Port),
    receive start -> ok end,
    Info = #sctp_sndrcvinfo{assoc_id = A, stream = 0, ppid = ?PPID_DATA},
    Bin = pattern(Size),
    T0 = now_us(),
    N = send_loop(S, Info, Bin, T0 + Dur, 0),
    Bytes = N * Size,
    ok = send(S, Info#sctp_sndrcvinfo{ppid = ?PPID_END}, <<N:64/native, Bytes:64/native>>),
    Coord ! {sent, self(), N, Bytes, T0},
    %% stay the association's owner until the receiver has everything
    receive stop -> gen_sctp:close(S) end.

send_loop(S, Info, Bin, End, N) when N band 63 =:= 0 ->
    case now_us() >= End of
        true -> N;
        false -> send_one(S, Info, Bin, End, N)
    end;
send_loop(S, Info, Bin, End, N) -> send_one(S, Info, Bin, End, N).

send_one(S, Info, Bin, End, N) ->
    ok = send(S, Info, Bin),
    send_loop(S, Info, Bin, End, N + 1).

%% gen_sctp:send never blocks: with the socket's send buffer full it
%% returns {error, eagain}, and gen_sctp has no "writable again" message
%% (gen_tcp queues in its port instead). So wait a millisecond, the
%% shortest Erlang timer, and try again.
send(S, Info, Bin) ->
    case gen_sctp:send(S, Info, Bin) of
        {error, eagain} -> receive after 1 -> send(S, Info, Bin) end;
        {error, Why} when Why =:= epipe; Why =:= econnreset ->
            %% the association is gone: say how, if the socket said it (its
            %% event is in this mailbox), and let the other end's reason
            %% reach the coordinator first
            receive
                {sctp, S, _, _, {_, Ev}} when is_tuple(Ev), element(1, Ev) =/= sctp_sndrcvinfo ->
                    receive after 2000 -> exit({send, Why, Ev}) end
            after 2000 -> exit({send, Why, no_event})
            end;
        Other -> Other
    end.

pattern(Size) -> << <<((I * 7 + 1) band 255)>> || I <- lists:seq(0, Size - 1) >>.

%% -------------------------------------------------------------------- rr

rr(Size, Dur) ->
    Self = self(),
    Srv = spawn_link(fun() -> echo_server(Self) end),
    Port = receive {port, Srv, P} -> P end,
    {S, A} = connect(Port),
    Info = #sctp_sndrcvinfo{assoc_id = A, stream = 0, ppid = ?PPID_PING},
    Ping = pattern(Size),
    T0 = now_us(),
    {Trips, T, Lat} = rr_loop(S, Info, Ping, T0, T0 + Dur, 0, []),
    ok = send(S, Info#sctp_sndrcvinfo{ppid = ?PPID_END}, <<Trips:64/native, 0:64>>),
    receive {echoed, Srv} -> ok after 10000 -> exit(echo_server_hangs) end,
    gen_sctp:close(S),
    Sorted = list_to_tuple(lists:sort(Lat)),
    L = tuple_size(Sorted),
    {P50, P99} = case L of
                     0 -> {0, 0};
                     _ -> {element(L div 2 + 1, Sorted), element(L * 99 div 100 + 1, Sorted)}
                 end,
    {ok, Trips, Trips * Size, T - T0, P50, P99}.

rr_loop(_, _, _, T, End, N, Lat) when T >= End -> {N, T, Lat};
rr_loop(S, Info, Ping, T, End, N, Lat) ->
    ok = send(S, Info, Ping),
    rr_reply(S, Ping),
    T2 = now_us(),
    rr_loop(S, Info, Ping, T2, End, N + 1, [T2 - T | Lat]).

rr_reply(S, Ping) ->
    receive
        {sctp, S, _, _, {[#sctp_sndrcvinfo{ppid = ?PPID_PING}], Ping}} -> ok;
        {sctp, S, _, _, {[#sctp_sndrcvinfo{}], Data}} -> exit({wrong_reply, Data});
        {sctp, S, _, _, _Event} -> rr_reply(S, Ping);
        {sctp_passive, S} -> ok = inet:setopts(S, [{active, ?ACTIVE}]), rr_reply(S, Ping)
    after 10000 -> exit(no_reply_within_10_s)
    end.

echo_server(Coord) ->
    {ok, S} = gen_sctp:open(0, opts()),
    ok = gen_sctp:listen(S, true),
    {ok, Port} = inet:port(S),
    Coord ! {port, self(), Port},
    echo_loop(S, Coord),
    gen_sctp:close(S).

echo_loop(S, Coord) ->
    receive
        {sctp, S, _, _, {[#sctp_sndrcvinfo{ppid = ?PPID_END}], _}} ->
            Coord ! {echoed, self()};
        {sctp, S, _, _, {[#sctp_sndrcvinfo{assoc_id = A, stream = St, ppid = P}], Data}} ->
            ok = send(S, #sctp_sndrcvinfo{assoc_id = A, stream = St, ppid = P}, Data),
            echo_loop(S, Coord);
        {sctp, S, _, _, _Event} -> echo_loop(S, Coord);
        {sctp_passive, S} -> ok = inet:setopts(S, [{active, ?ACTIVE}]), echo_loop(S, Coord)
    after 30000 -> exit(echo_server_got_nothing_for_30_s)
    end.

%% ----------------------------------------------------------------- setup

%% One client socket makes an association (gen_sctp:connect returns once it
%% is up) and waits for the server's word that it has it up too, shuts it
%% down (gen_sctp:eof), waits for SHUTDOWN COMPLETE and for the server's
%% word that it saw it end, again and again; the server's socket counts the
%% associations' comm_up and shutdown_comp events.
setup(Dur) ->
    Self = self(),
    Srv = spawn_link(fun() -> setup_server(Self) end),
    Port = receive {port, Srv, P} -> P end,
    {ok, S} = gen_sctp:open(0, opts()),
    T0 = now_us(),
    {N, T} = setup_loop(S, Port, T0, T0 + Dur, 0),
    gen_sctp:close(S),
    Srv ! {made, self(), N},
    receive
        {seen, Srv, N, N} -> {ok, N, 0, T - T0, 0, 0};
        {seen, Srv, Ups, Downs} -> {fail, {made, N, server_saw_up, Ups, down, Downs}}
    after 20000 -> {fail, {made, N, server_did_not_see_them_end}}
    end.

setup_loop(_, _, T, End, N) when T >= End -> {N, T};
setup_loop(S, Port, _, End, N) ->
    A = case gen_sctp:connect(S, {127, 0, 0, 1}, Port, [], 10000) of
            {ok, #sctp_assoc_change{state = comm_up} = Up} -> Up;
            Other -> exit({connect, N, Other})
        end,
    server_word(srv_up),
    ok = gen_sctp:eof(S, A),
    shutdown_wait(S, A#sctp_assoc_change.assoc_id),
    server_word(srv_down),
    setup_loop(S, Port, now_us(), End, N + 1).

shutdown_wait(S, Id) ->
    receive
        {sctp, S, _, _, {_, #sctp_assoc_change{state = shutdown_comp, assoc_id = Id}}} -> ok;
        {sctp, S, _, _, {_, #sctp_assoc_change{state = St, assoc_id = Id}}}
          when St =/= comm_up -> exit({shutdown, St});
        {sctp, S, _, _, _} -> shutdown_wait(S, Id);
        {sctp_passive, S} -> ok = inet:setopts(S, [{active, ?ACTIVE}]), shutdown_wait(S, Id)
    after 10000 -> exit(no_shutdown_complete_within_10_s)
    end.

server_word(W) ->
    receive {W, _} -> ok after 10000 -> exit({no_word_from_the_server_within_10_s, W}) end.

setup_server(Coord) ->
    {ok, S} = gen_sctp:open(0, opts()),
    ok = gen_sctp:listen(S, true),
    {ok, Port} = inet:port(S),
    Coord ! {port, self(), Port},
    put(client, Coord),
    setup_server_loop(S, 0, 0, none).

setup_server_loop(S, Ups, Downs, {made, From, N}) when Downs >= N, Ups =:= Downs ->
    From ! {seen, self(), Ups, Downs},
    gen_sctp:close(S);
setup_server_loop(S, Ups, Downs, Made) ->
    receive
        {made, From, N} -> setup_server_loop(S, Ups, Downs, {made, From, N});
        {sctp_passive, S} ->
            ok = inet:setopts(S, [{active, ?ACTIVE}]),
            setup_server_loop(S, Ups, Downs, Made);
        {sctp, S, _, _, {_, #sctp_assoc_change{state = comm_up}}} ->
            get(client) ! {srv_up, self()},
            setup_server_loop(S, Ups + 1, Downs, Made);
        {sctp, S, _, _, {_, #sctp_assoc_change{state = shutdown_comp}}} ->
            get(client) ! {srv_down, self()},
            setup_server_loop(S, Ups, Downs + 1, Made);
        {sctp, S, _, _, _} -> setup_server_loop(S, Ups, Downs, Made)
    after 15000 ->
        case Made of
            {made, From, _} -> From ! {seen, self(), Ups, Downs};
            none -> ok
        end
    end.
