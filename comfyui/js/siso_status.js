// Shows the SISO nodes' status on the node itself: live progress while the LoRA is optimised
// ("siso.progress" events sent by the node), then the final report (the node's "text" UI output).
// The box grows to the report (every line visible, up to MAX_ROWS; longer ones scroll), and the
// node with it, so a report is never cut to its first lines.
import { app } from "../../scripts/app.js";
import { api } from "../../scripts/api.js";
import { ComfyWidgets } from "../../scripts/widgets.js";

const SISO_NODES = ["SISOLoRAGenerator", "SISOSubjectEdit", "SISOLoadLoRA"];
const WIDGET = "siso_status";
const MAX_ROWS = 24;
const MIN_ROWS = 2;

// rows the text needs in a box `width` pixels wide (wrapped lines count as rows)
function rowsFor(text, width, charWidth) {
  const perRow = Math.max(16, Math.floor((width - 16) / charWidth));
  return String(text)
    .split("\n")
    .reduce((rows, line) => rows + Math.max(1, Math.ceil(line.length / perRow)), 0);
}

function fitToText(node, widget, text) {
  const el = widget.inputEl;
  const style = el ? getComputedStyle(el) : null;
  const fontSize = parseFloat(style?.fontSize) || 12;
  const lineHeight = parseFloat(style?.lineHeight) || fontSize * 1.25;
  const rows = Math.min(MAX_ROWS, Math.max(MIN_ROWS, rowsFor(text, node.size?.[0] ?? 400, fontSize * 0.6)));
  const height = Math.ceil(rows * lineHeight + 14);
  widget.siso_height = height;
  widget.options.getMinHeight = () => widget.siso_height;
  widget.options.getMaxHeight = () => Math.max(widget.siso_height, 600);
  const wanted = node.computeSize?.();
  if (wanted && node.size && node.size[1] < wanted[1]) node.setSize([node.size[0], wanted[1]]);
  return rows;
}

function showStatus(node, text) {
  if (!node) return;
  let widget = node.widgets?.find((w) => w.name === WIDGET);
  if (!widget) {
    widget = ComfyWidgets["STRING"](node, WIDGET, ["STRING", { multiline: true }], app).widget;
    widget.serialize = false; // not part of the saved workflow or the prompt
    widget.options = { ...(widget.options || {}), serialize: false };
    if (widget.inputEl) {
      widget.inputEl.readOnly = true;
      widget.inputEl.style.opacity = 0.85;
    }
  }
  widget.value = text;
  fitToText(node, widget, text);
  node.setDirtyCanvas?.(true, true);
}

app.registerExtension({
  name: "siso.status",
  async beforeRegisterNodeDef(nodeType, nodeData) {
    if (!SISO_NODES.includes(nodeData.name)) return;
    const onExecuted = nodeType.prototype.onExecuted;
    nodeType.prototype.onExecuted = function (message) {
      onExecuted?.apply(this, arguments);
      const text = message?.text;
      if (text) showStatus(this, Array.isArray(text) ? text.join("\n") : String(text));
    };
  },
  setup() {
    api.addEventListener("siso.progress", ({ detail }) => {
      if (!detail || detail.node == null) return;
      const node = app.graph?.getNodeById?.(Number(detail.node)) ?? app.graph?.getNodeById?.(detail.node);
      showStatus(node, detail.text ?? "");
    });
  },
});
