# Scenario 3: replica lag over time, direct against through the proxy.
# gnuplot -e "direct='d.csv'; proxy='p.csv'; out='lag.png'" bench/lag.gp
# CSV columns: seconds since the writes started, max lag over the replicas,
# mean lag, then one column per replica (seconds).
set terminal pngcairo size 1200,650 font "Sans,11"
set output out
if (!exists("ttl")) ttl = "Reconnect storm: replica lag"
set title ttl
set xlabel "seconds since the writes started"
set ylabel "lag, seconds (now − the replica's newest timestamp key)"
set grid
set key top left box opaque
set yrange [0:*]
# Kill rounds: triangles on the time axis (files of one time per line).
if (!exists("dkills")) dkills = direct.".kills"
if (!exists("pkills")) pkills = proxy.".kills"
plot direct using 1:2 with lines lw 2 lc rgb "#c0392b" title "direct: max over replicas", \
     direct using 1:3 with lines lw 1 dt 2 lc rgb "#e67e22" title "direct: mean", \
     proxy using 1:2 with lines lw 2 lc rgb "#2471a3" title "through psync-proxy: max over replicas", \
     proxy using 1:3 with lines lw 1 dt 2 lc rgb "#48c9b0" title "through psync-proxy: mean", \
     dkills using 1:(0) with points pt 9 ps 2 lc rgb "#c0392b" title "direct: every link killed", \
     pkills using 1:(0) with points pt 8 ps 2.6 lw 2 lc rgb "#2471a3" title "through psync-proxy: every link killed"
