//! The HTML page of a timeline: the SVG inline, a few lines of CSS, and a
//! small inline script that turns each mark's `<title>` into a hover tooltip.

use std::fmt::Write as _;

use super::svg::{esc, svg_element};
use super::TimelineInput;

/// The timeline as a self-contained HTML page: the SVG inline, hover
/// tooltips by a few lines of inline script, nothing loaded from elsewhere.
pub fn render_html(input: &TimelineInput<'_>) -> String {
    let mut out = String::new();
    out.push_str("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n");
    let _ = writeln!(out, "<title>{}</title>", esc(&input.title));
    out.push_str(HTML_STYLE);
    out.push_str("</head>\n<body>\n");
    out.push_str(&svg_element(input));
    out.push_str("\n<div id=\"tip\" hidden></div>\n");
    out.push_str(HTML_SCRIPT);
    out.push_str("</body>\n</html>\n");
    out
}

const HTML_STYLE: &str = "<style>
body{margin:8px;background:#fff;font-family:'DejaVu Sans',Helvetica,Arial,sans-serif}
svg{max-width:100%;height:auto}
#tip{position:fixed;z-index:9;max-width:640px;padding:6px 8px;border:1px solid #888;border-radius:4px;
background:#fffff4;color:#111;font:12px/1.35 'DejaVu Sans Mono',monospace;white-space:pre-wrap;
pointer-events:none;box-shadow:0 2px 6px rgba(0,0,0,.25)}
svg .tip:hover{stroke:#000;stroke-width:1px}
</style>
";

const HTML_SCRIPT: &str = "<script>
(function(){
  var tip=document.getElementById('tip');
  document.querySelectorAll('svg .tip').forEach(function(el){
    var t=el.querySelector(':scope > title');
    if(t){el.setAttribute('data-tip',t.textContent);t.remove();}
  });
  document.addEventListener('mousemove',function(e){
    var el=e.target.closest&&e.target.closest('[data-tip]');
    if(!el){tip.hidden=true;return;}
    tip.textContent=el.getAttribute('data-tip');
    tip.hidden=false;
    var x=e.clientX+14,y=e.clientY+14,w=tip.offsetWidth,h=tip.offsetHeight;
    if(x+w>innerWidth-4)x=Math.max(4,e.clientX-w-14);
    if(y+h>innerHeight-4)y=Math.max(4,e.clientY-h-14);
    tip.style.left=x+'px';tip.style.top=y+'px';
  });
})();
</script>
";
