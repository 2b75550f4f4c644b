# Thin wrapper: every target calls the CLI, pytest or a bench script. No logic lives here.
VENV    ?= .venv
PYTHON  ?= $(VENV)/bin/python
SL      := $(PYTHON) -m sparselstm
BUILD   ?= build

# `make sim`: the shipped 35-word model as compressed by `sparselstm compress` (10 % density, balanced for
# 16 PEs, fine-tuned; models/README.md), run on shipped test utterances of unseen voices, one per word.
# Its own zeros are kept (density 1). 6-bit indices: the encoder's hint for this model (its sparsest
# matrices are at 3 %, where 4-bit gaps overflow into padding entries); 12 + 6 = 18-bit entry words.
SIM_MODEL      ?= models/words-lstmp-sparse.npz
SIM_HEAD       ?= models/words-lstmp-sparse.head.npz
SIM_FEATURES   ?= models/words-test.npz
SIM_PES        ?= 16
SIM_DENSITY    ?= 1.0
SIM_INDEX_BITS ?= 6
SIM_COUNT      ?= 35
SIMULATOR      ?= verilator

# `make sim-delta`: the same model and utterances in delta mode (docs/architecture.md, "Delta mode"), with
# the thresholds of bench/delta_sweep.py's knee (x, y 0.2, m 0.02: 82.6 % against 83.4 % accuracy).
SIM_DELTA      ?= models/words-delta-thresholds.json

# `make sim-delta-trained`: the model fine-tuned in delta mode (models/words-lstmp-delta10.*; docs/compression.md
# section 8) with the thresholds chosen on validation, x 0.2, y 0.4, m 0.1, 8 element-wise lanes.
DELTA_MODEL    ?= models/words-lstmp-delta10.npz
DELTA_HEAD     ?= models/words-lstmp-delta10.head.npz
DELTA_THRESHOLDS ?= models/words-lstmp-delta10.thresholds.json
DELTA_LANES    ?= 8

.PHONY: help install test test-all sim sim-delta sim-delta-trained sim-density05 sim-regress encode verilog bitstream bench data data-full train train-full accuracy compression-experiment clean

help:
	@echo "make install      set up: apt packages where missing, .venv, pip install -e .[dev]"
	@echo "make test         the test suite (what CI runs)"
	@echo "make sim          encode the shipped model, run utterances through the RTL on Verilator, report"
	@echo "make sim-density05  the same task compressed to 5 % density (models/words-lstmp-sparse05.*)"
	@echo "make sim-delta    the same in delta mode (thresholds $(SIM_DELTA)): columns skipped, cycles"
	@echo "make sim-delta-trained  the model fine-tuned for delta mode, its thresholds, $(DELTA_LANES) lanes"
	@echo "make verilog      Verilog + sidecar of the encoded demo model under $(BUILD)/verilog"
	@echo "make bitstream    ULX3S 85F bitstream of the encoded demo model under $(BUILD)/$(BOARD) (docs/boards.md)"
	@echo "make sim-regress  the large cocotb regression sweep (slow)"
	@echo "make bench        encoder speed and accelerator cycle benchmarks"
	@echo "make data/train   build the speech corpora / train the models (needs espeak-ng, PyTorch)"
	@echo "make accuracy     evaluate the shipped models -> $(BUILD)/accuracy.json"
	@echo "make compression-experiment   sensitivity, densities, iterative pruning + fine-tuning (needs data-full)"

install:
	bash scripts/install.sh

# One pytest worker per core (pytest-xdist; tests marked xdist_group share a worker): TEST_WORKERS=0 runs in
# this process.
TEST_WORKERS ?= auto
TEST_OPTIONS  = -n $(TEST_WORKERS) --dist loadgroup

test:
	$(PYTHON) -m pytest -q -m "not slow" $(TEST_OPTIONS)

test-all:
	$(PYTHON) -m pytest -q $(TEST_OPTIONS)

encode:
	$(SL) encode $(SIM_MODEL) -o $(BUILD)/sim/encoded --pes $(SIM_PES) --density $(SIM_DENSITY) \
	    --index-bits $(SIM_INDEX_BITS)

verilog: encode
	$(SL) verilog $(BUILD)/sim/encoded -o $(BUILD)/verilog

# `make bitstream`: the encoded demo model on a ULX3S 85F with the open tools (docs/boards.md; about 20 min).
BOARD      ?= ulx3s-85f
BOARD_FREQ ?= 125
# the nextpnr seed with the most slack at 125 MHz with the shipped model since session 28 (7a319dc, seed 1:
# 130.1 MHz; 76b4ab9, seeds 1, 3: 136.4, 134.3; docs/boards.md); placement is deterministic per netlist and seed,
# another design may need another
BOARD_SEED ?= 1

bitstream: encode
	$(SL) build $(BUILD)/sim/encoded --board $(BOARD) -o $(BUILD)/$(BOARD) --freq $(BOARD_FREQ) --seed $(BOARD_SEED)

sim: encode
	$(SL) sim $(BUILD)/sim/encoded --features $(SIM_FEATURES) --head $(SIM_HEAD) --float-model $(SIM_MODEL) \
	    --count $(SIM_COUNT) --simulator $(SIMULATOR) --report $(BUILD)/sim/report.json

sim-delta:
	$(SL) encode $(SIM_MODEL) -o $(BUILD)/sim/encoded-delta --pes $(SIM_PES) --density $(SIM_DENSITY) \
	    --index-bits $(SIM_INDEX_BITS) --delta-threshold $(SIM_DELTA)
	$(SL) sim $(BUILD)/sim/encoded-delta --features $(SIM_FEATURES) --head $(SIM_HEAD) --float-model $(SIM_MODEL) \
	    --count $(SIM_COUNT) --simulator $(SIMULATOR) --report $(BUILD)/sim/report-delta.json

sim-delta-trained:
	$(SL) encode $(DELTA_MODEL) -o $(BUILD)/sim/encoded-delta-trained --pes $(SIM_PES) --density $(SIM_DENSITY) \
	    --index-bits $(SIM_INDEX_BITS) --delta-threshold $(DELTA_THRESHOLDS)
	$(SL) sim $(BUILD)/sim/encoded-delta-trained --features $(SIM_FEATURES) --head $(DELTA_HEAD) \
	    --float-model $(DELTA_MODEL) --count $(SIM_COUNT) --simulator $(SIMULATOR) --lanes $(DELTA_LANES) \
	    --report $(BUILD)/sim/report-delta-trained.json

# `make sim-density05`: the 35-word model compressed to 5 % density (docs/compression.md, section 9).
sim-density05:
	$(MAKE) sim SIM_MODEL=models/words-lstmp-sparse05.npz SIM_HEAD=models/words-lstmp-sparse05.head.npz \
	    BUILD=$(BUILD)/density05

sim-regress:
	$(PYTHON) -m pytest -q -m slow tests/test_cocotb_accelerator.py tests/test_hw_accelerator.py

# build/bench/results.json, report.md and plots (docs/benchmarks.md); then the two older scripts.
# BENCH_OPTIONS: more options of bench/report.py, e.g. `--routed DIR` (a bench/fmax.py or `sparselstm build`
# directory: latency at its routed Fmax).
BENCH_OPTIONS ?=

bench:
	$(PYTHON) bench/report.py -o $(BUILD)/bench $(BENCH_OPTIONS)
	$(PYTHON) bench/encode_speed.py
	nice -n 10 $(PYTHON) bench/cycles.py

data:
	$(SL) data --task digits --size small -o data/corpus/digits-small

data-full:
	$(SL) data --task digits --size full -o data/corpus/digits-full --workers 2
	$(SL) data --task words --size full -o data/corpus/words-full --workers 2

train:
	$(SL) train data/corpus/digits-small -o $(BUILD)/models/digits-small.pt --cells 64 --proj 32 --epochs 3

# The shipped models (models/README.md), from the full corpora of `make data-full`.
train-full:
	$(SL) train data/corpus/digits-full -o models/digits-lstmp.pt --cells 256 --proj 128 --epochs 10 --seed 0
	$(SL) train data/corpus/digits-full -o models/digits-peephole.pt --cells 128 --proj 64 --peephole --epochs 10 --seed 0
	$(SL) train data/corpus/words-full -o models/words-lstmp.pt --cells 256 --proj 128 --epochs 20 --lr 1e-3 --seed 0
accuracy:
	$(SL) accuracy -o $(BUILD)/accuracy.json

# The compression experiment of docs/compression.md on the 35-word model (about an hour on 2 cores).
compression-experiment:
	$(PYTHON) bench/compression_experiment.py --checkpoint models/words-lstmp.pt --data data/corpus/words-full \
	    -o $(BUILD)/compression-words --mask-variant
clean:
	rm -rf $(BUILD)
