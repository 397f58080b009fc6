// Shows the SISO nodes' status on the node itself: live progress while the LoRA is optimised
// ("siso.progress" events sent by the node), then the final report (the node's "text" UI output).
import { app } from "../../scripts/app.js";
import { api } from "../../scripts/api.js";
import { ComfyWidgets } from "../../scripts/widgets.js";

const SISO_NODES = ["SISOLoRAGenerator", "SISOSubjectEdit", "SISOLoadLoRA"];
const WIDGET = "siso_status";

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
