%% Evaluated by `rabbitmqctl eval` once a node has booted (scripts/infra rabbit-start,
%% docker/rabbitmq-entrypoint.sh): starts an election for every quorum queue member on this
%% node that has no leader, and returns the queues it did that for.
%%
%% Why: on RabbitMQ 3.10 a quorum queue declared moments before the node crashed can lose its
%% registration (Ra's name directory was not yet on disk). At the next boot the queue's member
%% is started as a new one, with an empty log, and nothing starts an election for it: on a
%% single node it stays a follower without a leader for good, and every declare, consume and
%% publish on it waits (rabbitmq-server#10070). An election is safe for any member without a
%% leader: it wins only with a majority, as Raft wants.
[begin
   {RaName, _} = amqqueue:get_pid(Q),
   ok = ra:trigger_election({RaName, node()}),
   rabbit_misc:rs(amqqueue:get_name(Q))
 end
 || Q <- rabbit_amqqueue:list(),
    amqqueue:get_type(Q) =:= rabbit_quorum_queue,
    lists:member(node(), maps:get(nodes, amqqueue:get_type_state(Q), [])),
    ra_leaderboard:lookup_leader(element(1, amqqueue:get_pid(Q))) =:= undefined].
