# Batch extraction with make: the videos split into SHARDS parts, each part extracted by its own
# target into its own dataset, the parts merged into OUT.
#
#     make -f pipelines/extract.mk VIDEOS=videos/ OUT=out.h5 SHARDS=64 -j 16
#
# Every part runs as one process of one thread (PART_ARGS), so run make with -j set to the number
# of cores: N extractions that each took every core would fight over them (measured on 2 cores:
# two parts of 1 thread each took 81 s; of 2 threads each, they had not finished after 13 minutes).
#
# Make redoes only what changed: a part whose list did not change is not redone, a part that
# failed fails its target only (`make -k` goes on), and running make again finishes what is
# missing (every part resumes where it stopped). A video that cannot be extracted does not fail
# its part: it is recorded, and `flowkit info OUT` lists it (fix it, then `make -B` the part).
# On a cluster, run the part targets through a job runner on storage all machines share.
# EXTRACT_ARGS are passed to every `flowkit extract` (algorithm, size... as for one machine).

VIDEOS ?= videos
OUT ?= out.h5
SHARDS ?= 8
FLOWKIT ?= flowkit
EXTRACT_ARGS ?=
PART_ARGS ?= --jobs 1 --threads 1
PARTS ?= $(OUT).parts

# The part lists are (re)written when the makefile is read, so their times are known before make
# decides what to rebuild; `flowkit partition` leaves a list untouched when it has not changed.
LISTS := $(shell $(FLOWKIT) partition $(VIDEOS) $(PARTS) --parts $(SHARDS))
ifeq ($(LISTS),)
$(error could not list the videos of $(VIDEOS); see the message above)
endif
PART_DATASETS := $(LISTS:$(PARTS)/list-%.txt=$(PARTS)/part-%.h5)

.DELETE_ON_ERROR:
.PHONY: all
all: $(OUT)

# Exit code 1 means "done, some videos failed and are recorded": the part is made.
$(PARTS)/part-%.h5: $(PARTS)/list-%.txt
	$(FLOWKIT) extract $(VIDEOS) $@ --list $< --quiet $(PART_ARGS) $(EXTRACT_ARGS) || [ $$? -eq 1 ]

$(OUT): $(PART_DATASETS)
	$(FLOWKIT) merge $@ $^
