"""Sensitivity page: which layers tolerate pruning and fewer bits, and a sparsity budget spread by it."""
import pandas as pd
import streamlit as st

import compression
from compression.metrics import METRICS
from compression.workflows.search import search_layerwise, search_sparsity
from compression.workflows.sensitivity import DEFAULT_AMOUNTS, DEFAULT_BITS, allocate_sparsity, allocation_recipe
from ui import background_runs, cache, charts, controls, navigation, run_views, scan_runs, state, stores, sweep_pool, \
    table_headers
from ui.text import t

navigation.require_navigation()
st.title(t("sensitivity.title"))
st.markdown(t("sensitivity.intro"))
st.latex(t("sensitivity.formula"))

choice, model = controls.load_current_model()
controls.require_evaluation(model, t("sensitivity.needs_evaluation"))
metric = controls.metric_label(model.evaluation.metric)
scorer = METRICS.get(model.evaluation.metric)
relative = scorer is not None and scorer.relative_tolerance  # perplexity: a share of the baseline
samples = cache.live_samples(model)
if samples is not None:
    st.caption(t("sensitivity.large_model", samples=samples))
results = stores.SENSITIVITY_FRAMES  # model → frame, kept across pages
caches = stores.SENSITIVITY_MEASUREMENTS

followed = stores.SENSITIVITY_SCANS
SO_FAR = "prune"  # the curves drawn while a scan runs: pruning's, what the budget below spreads
pool = sweep_pool.shared()


def draw_scan(run: background_runs.BackgroundRun, bar, chart, shown: int) -> int:
    """The scan's progress into ``bar``; the curves of the layers measured so far into ``chart``
    where points came since ``shown`` of them were drawn. Returns the points drawn."""
    progress = run_views.progress_bar(
        run, bar, lambda done, total, left: t("sensitivity.measurements", done=done, total=total, left=left))
    if progress is None:
        return shown
    if progress.done != shown and (measured := scan_runs.partial_frame(model, samples, progress.measured)) is not None:
        chart.plotly_chart(charts.sensitivity_curves(measured, SO_FAR, metric, axis=controls.metric_axis(model.evaluation.metric)),
                           width="stretch", key=f"sensitivity_partial_{progress.done}")
    return progress.done


def adopt(run: background_runs.BackgroundRun) -> None:
    """The finished scan's table into the session, its points into the model's cache (the searches reuse them)."""
    run_views.adopt(run, lambda frame: results.put(choice, frame), caches.setdefault(choice, {}),
                   lambda error: t("sensitivity.stopped", error=error))


st.subheader(t("sensitivity.one_layer"))
sweep_pool.describe(pool, sweep_pool.stays_here(choice, pool))
run = scan_runs.live(model, samples) or followed.get(choice)
if st.button(t("sensitivity.measure"), type="primary", key="sensitivity_run"):
    run = scan_runs.start(model, samples, pool, sweep_pool.travelling(choice, model, pool), dict(caches.get(choice, {})))
    followed.put(choice, run)
    run_views.see_through(run, draw_scan, adopt, started_here=True)  # drawing the curves as layers complete
elif run is not None and choice not in results:
    followed.put(choice, run)
    run_views.see_through(run, draw_scan, adopt, started_here=False)

frame = results.get(choice)
journaled = scan_runs.partial_frame(model, samples, scan_runs.journaled(model, samples)) if frame is None else None
if journaled is not None and journaled["layer"].nunique() < len(model.compressible):  # a scan stopped mid-way
    st.caption(t("sensitivity.journaled", layers=journaled["layer"].nunique(), total=len(model.compressible)))
    st.plotly_chart(charts.sensitivity_curves(journaled, SO_FAR, metric, axis=controls.metric_axis(model.evaluation.metric)),
                    width="stretch", key="sensitivity_journaled")
    st.stop()
if frame is None:
    st.info(t("sensitivity.not_measured", layers=len(model.compressible), amounts=len(DEFAULT_AMOUNTS), bits=len(DEFAULT_BITS)))
    st.stop()

kind = st.segmented_control(t("sensitivity.kind"), ["prune", "quantize"], key="sensitivity_kind",
                            format_func=lambda name: t(f"sensitivity.kinds.{name}")) or "prune"
curves_column, heatmap_column = st.columns(2, gap="medium")
curves_column.plotly_chart(charts.sensitivity_curves(frame, kind, metric, axis=controls.metric_axis(model.evaluation.metric)),
                           width="stretch", key="sensitivity_curves")
heatmap_column.plotly_chart(charts.sensitivity_heatmap(frame, kind, metric), width="stretch", key="sensitivity_heatmap")


@st.fragment
def budget() -> None:
    """The budget slider: allocation is pure arithmetic on the measured curves, so it is live."""
    st.subheader(t("sensitivity.budget"))
    amount = st.slider(t("sensitivity.overall"), 0.0, 0.95, 0.5, 0.01, key="sensitivity_budget")
    allocation = allocate_sparsity(frame, amount)
    parameters = frame.drop_duplicates("layer").set_index("layer")["parameters"]
    st.plotly_chart(charts.allocation_bars(allocation, amount), width="stretch", key="sensitivity_allocation")
    removed = sum(allocation[name] * parameters[name] for name in allocation) / parameters.sum()
    st.caption(t("sensitivity.removed", removed=removed, total=int(parameters.sum())))
    if st.button(t("sensitivity.use_allocation"), key="sensitivity_use_allocation"):
        state.use_recipe(allocation_recipe(allocation, amount))
        st.switch_page("pages/pruning.py")


budget()

st.subheader(t("sensitivity.search_title"))
if relative:
    tolerance = st.slider(t("sensitivity.tolerance_relative", metric=metric.lower()), 0.0, 20.0, 5.0, 0.5,
                          format="%.1f %%", key="sensitivity_tolerance_percent") / 100
else:
    tolerance = st.slider(t("sensitivity.tolerance", metric=metric.lower()), 0.0, 0.1, 0.01, 0.001, format="%.3f",
                          key="sensitivity_tolerance")
per_layer = st.toggle(t("sensitivity.per_layer"), value=False, key="sensitivity_per_layer")
searches = stores.SEARCHES
search_key = (choice, tolerance, per_layer)
if st.button(t("sensitivity.search"), key="sensitivity_search"):
    progress = st.progress(0.0, text=t("sensitivity.searching"))
    try:
        run = search_layerwise if per_layer else search_sparsity
        kwargs = {"sensitivity_frame": frame} if per_layer else {}
        searches.put(search_key, run(model, **kwargs, tolerance=tolerance, samples=samples,
                                     cache=caches.setdefault(choice, {}),
                                     progress=lambda done, total, _: progress.progress(min(done / max(total, 1), 1.0),
                                                                                       text=t("sensitivity.search_step", step=done))))
    except compression.CompressionError as error:
        st.error(t("sensitivity.stopped", error=error))
    progress.empty()

found = searches.get(search_key)
if found is not None:
    allowed = scorer.allowed_drop(found.baseline_value, tolerance) if scorer is not None else tolerance
    st.plotly_chart(charts.search_steps(found.steps, allowed, metric), width="stretch", key="sensitivity_search_steps")
    theta = "" if pd.isna(found.threshold) else t("sensitivity.theta", threshold=found.threshold)
    within = t("sensitivity.within_relative", tolerance=tolerance, allowed=allowed) if relative else \
        t("sensitivity.within", tolerance=tolerance)
    st.success(t("sensitivity.found", within=within, amount=found.amount, theta=theta, metric=metric.lower(),
                 value=found.value, drop=found.drop, evaluations=found.evaluations))
    shown = found.steps.drop(columns=["recipe", "thresholds"], errors="ignore")
    st.dataframe(shown, hide_index=True, width="stretch",
                 column_config=table_headers.headers(shown, model.evaluation.metric))
    if st.button(t("sensitivity.use_search"), key="sensitivity_use_search"):
        state.use_recipe(found.recipe)
        st.switch_page("pages/pruning.py")
