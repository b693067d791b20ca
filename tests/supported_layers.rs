//! SUPPORTED-LAYERS.md must match the registry. Regenerate with `make layers-doc`
//! (which runs this test with UPDATE_SUPPORTED_LAYERS=1).
use caffe_tch::tools::supported_layers::supported_layers_markdown;

#[test]
fn supported_layers_md_is_in_sync_with_the_registry() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("SUPPORTED-LAYERS.md");
    let generated = supported_layers_markdown();
    if std::env::var("UPDATE_SUPPORTED_LAYERS").is_ok() {
        std::fs::write(&path, &generated).expect("write SUPPORTED-LAYERS.md");
    }
    let on_disk = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(on_disk == generated, "SUPPORTED-LAYERS.md is stale: run `make layers-doc`");
}

#[test]
fn unknown_and_python_layers_are_clear_errors() {
    use caffe_tch::proto::caffe::LayerParameter;
    use caffe_tch::proto::text::{parse_str, TextOptions};
    let lp: LayerParameter = parse_str(r#"name: "x" type: "Frobnicate""#, "t", TextOptions::default()).unwrap().message;
    let e = caffe_tch::layers::create_layer(&lp).err().unwrap().to_string();
    assert!(e.starts_with("Unknown layer type: Frobnicate (known types: "), "{e}");
    assert!(e.contains("Convolution") && e.contains("DropIn"), "{e}");
    let lp: LayerParameter =
        parse_str(r#"name: "py" type: "Python" python_param { module: "m" layer: "L" }"#, "t", TextOptions::default())
            .unwrap()
            .message;
    let e = caffe_tch::layers::create_layer(&lp).err().unwrap().to_string();
    // No interpreter in this process: the error says how to run the net.
    assert!(
        e.starts_with(
            "layer py (m.L) is a Python layer, and this process has no Python: run the net from `import caffe`"
        ),
        "{e}"
    );
}

#[test]
fn every_registered_layer_names_an_existing_source_file() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/layers");
    for info in caffe_tch::layers::REGISTRY.iter() {
        assert!(dir.join(info.family).exists(), "{}: src/layers/{} does not exist", info.type_name, info.family);
    }
}
