module wxarchive/loadgen

go 1.22
