%% echopeer: the Erlang/OTP peer of bench/io_echo, a TCP echo server written
%% with gen_tcp the way an Erlang programmer writes one: an acceptor process,
%% and a process per connection that owns its socket, in {active, N} mode
%% (re-armed at tcp_passive), echoing each {tcp, S, Data} with gen_tcp:send.
%% Started by io_echo once per measurement, with as many schedulers (+S) and
%% the same CPU as io_echo gives its own servers:
%%
%%   erl -noshell +S 1 -pa DIR -run echopeer main IP -s init stop
%%
%% Sockets: binary, {nodelay, true}, {buffer, 65536} (the user-level buffer:
%% reads of up to 64 KiB, as the other servers' buffers; OTP's default is
%% 1460 bytes), {backlog, 4096} (as the others' listen(2)); sndbuf and recbuf
%% are left to the kernel's autotuning, as for every other server (setting
%% them turns it off); the default inet_drv backend.
%%
%% It listens on IP, port 0, and prints "port N schedulers S otp R". A connection
%% ends at tcp_closed, tcp_error or a failed send (the client resets them
%% all when it is done) and tells the counter process what it read and
%% echoed. When a line (or the end) comes on stdin, it stops accepting, waits
%% up to 5 s for every connection to end and prints "ok CONNS READ ECHOED"
%% (connections accepted and ended, bytes read, bytes echoed) or "fail WHY".
-module(echopeer).
-export([main/1]).

-define(ACTIVE, 100).
-define(BUFFER, 65536).

main([Addr]) ->
    {ok, Ip} = inet:parse_address(Addr),
    Opts = [binary, {ip, Ip}, {active, false}, {nodelay, true}, {buffer, ?BUFFER},
            {backlog, 4096}, {reuseaddr, true}],
    case gen_tcp:listen(0, Opts) of
        {ok, L} ->
            {ok, Port} = inet:port(L),
            Counter = spawn_link(fun() -> counter(0, 0, 0, 0) end),
            Acceptor = spawn_link(fun() -> accept_loop(L, Counter) end),
            io:format("port ~B schedulers ~B otp ~s~n",
                      [Port, erlang:system_info(schedulers_online),
                       erlang:system_info(otp_release)]),
            _ = io:get_line(""),
            %% the acceptor is blocked in accept: closing the socket ends it
            unlink(Acceptor),
            Ref = monitor(process, Acceptor),
            gen_tcp:close(L),
            receive {'DOWN', Ref, process, Acceptor, _} -> ok end,
            Counter ! {report, self()},
            receive
                {counts, Conns, Conns, Read, Echoed} ->
                    io:format("ok ~B ~B ~B~n", [Conns, Read, Echoed]);
                {counts, Conns, Ended, _, _} ->
                    io:format("fail ~B of ~B connections still open 5 s after the client ended~n",
                              [Conns - Ended, Conns])
            end;
        {error, Why} ->
            io:format("fail listen: ~p~n", [Why])
    end.

accept_loop(L, Counter) ->
    case gen_tcp:accept(L) of
        {ok, S} ->
            Pid = spawn(fun() -> conn(S, Counter) end),
            Counter ! accepted,
            %% the socket's messages go to its owner: hand it over, then let
            %% the connection process switch it to active
            _ = gen_tcp:controlling_process(S, Pid),
            Pid ! go,
            accept_loop(L, Counter);
        {error, closed} ->
            ok
    end.

conn(S, Counter) ->
    receive go -> ok end,
    {Read, Echoed} = case inet:setopts(S, [{active, ?ACTIVE}]) of
                         ok -> echo(S, 0, 0);
                         {error, _} -> {0, 0}  % reset before it started
                     end,
    gen_tcp:close(S),
    Counter ! {ended, Read, Echoed}.

echo(S, Read, Echoed) ->
    receive
        {tcp, S, Data} ->
            N = byte_size(Data),
            case gen_tcp:send(S, Data) of
                ok -> echo(S, Read + N, Echoed + N);
                {error, _} -> {Read + N, Echoed}
            end;
        {tcp_passive, S} ->
            case inet:setopts(S, [{active, ?ACTIVE}]) of
                ok -> echo(S, Read, Echoed);
                {error, _} -> {Read, Echoed}
            end;
        {tcp_closed, S} -> {Read, Echoed};
        {tcp_error, S, _} -> {Read, Echoed}
    end.

%% Connections accepted and ended, bytes read and echoed by those that ended.
counter(Conns, Ended, Read, Echoed) ->
    receive
        accepted -> counter(Conns + 1, Ended, Read, Echoed);
        {ended, R, E} -> counter(Conns, Ended + 1, Read + R, Echoed + E);
        {report, From} -> report(From, Conns, Ended, Read, Echoed)
    end.

report(From, Conns, Ended, Read, Echoed) when Ended >= Conns ->
    From ! {counts, Conns, Ended, Read, Echoed};
report(From, Conns, Ended, Read, Echoed) ->
    receive
        {ended, R, E} -> report(From, Conns, Ended + 1, Read + R, Echoed + E)
    after 5000 -> From ! {counts, Conns, Ended, Read, Echoed}
    end.
